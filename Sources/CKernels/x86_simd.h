// Helpers shared by the vector kernels (skinny_gemm.c, quant_gemm.c, decode_attention.c, logits.c, attention_rows.c).
// Internal to CKernels.
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

// Tail masks for the last n < 8 (or 16) floats of a row: AVX2's as a vector of all-ones lanes (for maskload,
// maskstore and a bitwise and), AVX-512's as a bit mask. Masked-out lanes are neither read nor written.
__attribute__((target("avx2,fma"))) static inline __m256i nc_mask8(long n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline __mmask16 nc_mask16(long n) { return (__mmask16)((1u << n) - 1); }

// the largest of a vector's eight floats
__attribute__((target("avx2,fma"))) static inline float nc_hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// exp(x) = 2^n exp(r), n = round(x / ln 2), |r| <= ln 2 / 2, Cephes' degree-5 polynomial for exp(r) (the same steps
// and constants as scalar_math.h's nc_exp_scalar); x is clamped to [-87.3, 88.3]. One body for both widths: W is the vector's
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

// tanh, the same formula as scalar_math.h's nc_tanh_scalar: sign(x) (1 - 2 / (exp(2|x|) + 1)), and near zero (|x| <= 0.02,
// where that cancels) x - x^3/3 + 2x^5/15. One body for both widths, as NC_EXP_BODY; only the final choice between
// the two branches differs (a blend by a vector mask with AVX2, by a bit mask with AVX-512).
#define NC_TANH_BODY(W, x, EXP, SELECT_GT)                                                                            \
    const __m##W signMask = _mm##W##_castsi##W##_ps(_mm##W##_set1_epi32((int)0x80000000u));                           \
    __m##W sign = _mm##W##_and_ps(x, signMask), ax = _mm##W##_andnot_ps(signMask, x);                                 \
    __m##W e = EXP(_mm##W##_mul_ps(_mm##W##_set1_ps(2.f), _mm##W##_min_ps(ax, _mm##W##_set1_ps(44.f))));              \
    __m##W big = _mm##W##_sub_ps(_mm##W##_set1_ps(1.f), _mm##W##_div_ps(_mm##W##_set1_ps(2.f), _mm##W##_add_ps(e, _mm##W##_set1_ps(1.f)))); \
    big = _mm##W##_or_ps(big, sign);                                                                                  \
    __m##W x2 = _mm##W##_mul_ps(x, x);                                                                                \
    __m##W small = _mm##W##_mul_ps(x, _mm##W##_fmadd_ps(x2, _mm##W##_fmadd_ps(x2, _mm##W##_set1_ps(2.f / 15.f),      \
                                   _mm##W##_set1_ps(-1.f / 3.f)), _mm##W##_set1_ps(1.f)));                            \
    return SELECT_GT(ax, _mm##W##_set1_ps(0.02f), big, small);

// a > b ? yes : no, lane by lane
#define NC_SELECT_GT8(a, b, yes, no) _mm256_blendv_ps(no, yes, _mm256_cmp_ps(a, b, _CMP_GT_OQ))
#define NC_SELECT_GT16(a, b, yes, no) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ), no, yes)

__attribute__((target("avx2,fma"))) static inline __m256 nc_tanh8(__m256 x) { NC_TANH_BODY(256, x, nc_exp8, NC_SELECT_GT8) }
__attribute__((target("avx512f,avx512dq"))) static inline __m512 nc_tanh16(__m512 x) { NC_TANH_BODY(512, x, nc_exp16, NC_SELECT_GT16) }
#endif
