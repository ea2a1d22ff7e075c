// Helpers shared by the vector kernels (skinny_gemm.c, quant_gemm.c, decode_attention.c, softcap.c). Internal to CKernels.
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

// exp(x) = 2^n exp(r), n = round(x / ln 2), |r| <= ln 2 / 2, Cephes' degree-5 polynomial for exp(r) (the same steps
// and constants as NanoTensor's vexp); x is clamped to [-87.3, 88.3]. One body for both widths: W is the vector's
// bits (256: eight floats with AVX2, 512: sixteen with AVX-512), and every intrinsic is _mm<W>_...
#define NC_EXP_BODY(W, x)                                                                                             \
    x = _mm##W##_min_ps(_mm##W##_max_ps(x, _mm##W##_set1_ps(-87.3f)), _mm##W##_set1_ps(88.3f));                        \
    const __m##W magic = _mm##W##_set1_ps(12582912.f); /* 1.5 * 2^23: adding it rounds to an integer */               \
    __m##W t = _mm##W##_fmadd_ps(x, _mm##W##_set1_ps(1.44269504f), magic);                                            \
    __m##W n = _mm##W##_sub_ps(t, magic);                                                                             \
    __m##W r = _mm##W##_fmadd_ps(n, _mm##W##_set1_ps(2.1219444e-4f), _mm##W##_fnmadd_ps(n, _mm##W##_set1_ps(0.693359375f), x)); \
    __m##W p = _mm##W##_set1_ps(1.98756915e-4f);                                                                      \
    p = _mm##W##_fmadd_ps(p, r, _mm##W##_set1_ps(1.3981999507e-3f));                                                  \
    p = _mm##W##_fmadd_ps(p, r, _mm##W##_set1_ps(8.3334519073e-3f));                                                  \
    p = _mm##W##_fmadd_ps(p, r, _mm##W##_set1_ps(4.1665795894e-2f));                                                  \
    p = _mm##W##_fmadd_ps(p, r, _mm##W##_set1_ps(1.6666665459e-1f));                                                  \
    p = _mm##W##_fmadd_ps(p, r, _mm##W##_set1_ps(5.0000001201e-1f));                                                  \
    __m##W e = _mm##W##_add_ps(_mm##W##_fmadd_ps(p, _mm##W##_mul_ps(r, r), r), _mm##W##_set1_ps(1.f));                \
    /* the integer n sits in the low mantissa bits of t; move it into the exponent field */                          \
    __m##W##i bits = _mm##W##_slli_epi32(_mm##W##_add_epi32(_mm##W##_sub_epi32(_mm##W##_castps_si##W(t),              \
                                         _mm##W##_set1_epi32(0x4B400000)), _mm##W##_set1_epi32(127)), 23);            \
    return _mm##W##_mul_ps(e, _mm##W##_castsi##W##_ps(bits));

__attribute__((target("avx2,fma"))) static inline __m256 nc_exp8(__m256 x) { NC_EXP_BODY(256, x) }
__attribute__((target("avx512f"))) static inline __m512 nc_exp16(__m512 x) { NC_EXP_BODY(512, x) }
#endif
