// Helpers shared by the AVX2 kernels (skinny_gemm.c, quant_gemm.c). Internal to CKernels.
#pragma once
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define NC_X86 1

// the sum of a vector's eight floats
__attribute__((target("avx2,fma"))) static inline float nc_hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif
