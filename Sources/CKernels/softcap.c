// The logit softcap, cap * tanh(x / cap), in place (see ckernels.h). Decoding applies it to every vocabulary logit
// of every row each step: 32768 per row. Written with Swift's SIMD8 (baseline x86-64, so SSE) it cost 6 ns a logit,
// 0.20 ms of a 2.1 ms d6 decode step; here it is AVX2 + FMA (0.8-1.1 ns a logit on Zen 4), or AVX-512 where the CPU
// has it (0.4-0.6 ns there, though Zen 4 runs 512-bit operations as two halves).
#include "ckernels.h"

#include <math.h>

#include "x86_simd.h"

#ifdef NC_X86
// tanh, the same formula as NanoTensor's vtanh: sign(x) (1 - 2 / (exp(2|x|) + 1)), and near zero (|x| <= 0.02,
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

__attribute__((target("avx2,fma"))) static inline __m256 tanh8(__m256 x) { NC_TANH_BODY(256, x, nc_exp8, NC_SELECT_GT8) }
__attribute__((target("avx512f,avx512dq"))) static inline __m512 tanh16(__m512 x) { NC_TANH_BODY(512, x, nc_exp16, NC_SELECT_GT16) }

__attribute__((target("avx2,fma"))) static void softcap_avx2(float *x, long n, float cap) {
    const __m256 c = _mm256_set1_ps(cap), inv = _mm256_set1_ps(1 / cap);
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(c, tanh8(_mm256_mul_ps(_mm256_loadu_ps(x + i), inv))));
    if (i < n) {  // the tail through the same vector code, so every logit gets the same function
        float tail[8] = {0};
        for (long j = i; j < n; j++) tail[j - i] = x[j];
        _mm256_storeu_ps(tail, _mm256_mul_ps(c, tanh8(_mm256_mul_ps(_mm256_loadu_ps(tail), inv))));
        for (long j = i; j < n; j++) x[j] = tail[j - i];
    }
}

// AVX-512: sixteen lanes, the tail under a mask instead of through a copy
__attribute__((target("avx512f,avx512dq"))) static void softcap_avx512(float *x, long n, float cap) {
    const __m512 c = _mm512_set1_ps(cap), inv = _mm512_set1_ps(1 / cap);
    long i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(c, tanh16(_mm512_mul_ps(_mm512_loadu_ps(x + i), inv))));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(c, tanh16(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv))));
    }
}
#endif

void nc_softcap(float *x, long n, float cap) {
#ifdef NC_X86
    int level = nc_kernel_level();
    if (level >= 2) { softcap_avx512(x, n, cap); return; }
    if (level >= 1) { softcap_avx2(x, n, cap); return; }
#endif
    for (long i = 0; i < n; i++) x[i] = cap * tanhf(x[i] / cap);
}
