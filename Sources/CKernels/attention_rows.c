// The softmax rows of the tiled training attention (NanoTensor's causalAttention; see ckernels.h). Each tile of 64
// queries has its scores from BLAS; these turn a row of scores into probabilities over the keys the query's window
// allows, recompute them from the saved log-sum-exp in the backward pass, and form dS = P (dP - rowdot) scale.
// In Swift these ran libm's expf one score at a time: a third of the attention's time at d4.
#include "ckernels.h"

#include <math.h>

#include "kernel_dispatch.h"
#include "scalar_math.h"

static float softmax_window_portable(float *row, int n, int lo, int hi) {
    float m = -INFINITY;
    for (int j = lo; j <= hi; j++) m = row[j] > m ? row[j] : m;
    float sum = 0;
    for (int j = lo; j <= hi; j++) row[j] = nc_exp_scalar(row[j] - m);
    {
        NC_REASSOCIATE
        for (int j = lo; j <= hi; j++) sum += row[j];
    }
    float inv = 1 / sum;
    for (int j = lo; j <= hi; j++) row[j] *= inv;
    for (int j = 0; j < lo; j++) row[j] = 0;
    for (int j = hi + 1; j < n; j++) row[j] = 0;
    return m + logf(sum);
}

static void softmax_window_recompute_portable(float *row, int n, int lo, int hi, float lse) {
    for (int j = lo; j <= hi; j++) row[j] = nc_exp_scalar(row[j] - lse);
    for (int j = 0; j < lo; j++) row[j] = 0;
    for (int j = hi + 1; j < n; j++) row[j] = 0;
}

#ifdef NC_X86
// W-bit bodies (256: AVX2, 512: AVX-512) over the window lo...hi. MASK(n) is a tail mask of the n < W/32 lanes left;
// LOADM/STOREM load (zeros past the mask) and store under it. The lanes a mask drops never reach the sum or the max.
#define NC_SOFTMAX_WINDOW_BODY(W, EXP, HSUM, HMAX, MASKT, MASK, LOADM, STOREM)                                        \
    const int lanes = W / 32;                                                                                         \
    __m##W mv = _mm##W##_set1_ps(-INFINITY);                                                                          \
    int j = lo;                                                                                                       \
    for (; j + lanes <= hi + 1; j += lanes) mv = _mm##W##_max_ps(mv, _mm##W##_loadu_ps(row + j));                     \
    float m = HMAX(mv);                                                                                               \
    for (int r = j; r <= hi; r++) m = row[r] > m ? row[r] : m;                                                        \
    const __m##W mb = _mm##W##_set1_ps(m);                                                                            \
    __m##W acc = _mm##W##_setzero_ps();                                                                               \
    for (j = lo; j + lanes <= hi + 1; j += lanes) {                                                                   \
        __m##W e = EXP(_mm##W##_sub_ps(_mm##W##_loadu_ps(row + j), mb));                                              \
        _mm##W##_storeu_ps(row + j, e);                                                                               \
        acc = _mm##W##_add_ps(acc, e);                                                                                \
    }                                                                                                                 \
    if (j <= hi) {                                                                                                    \
        MASKT k = MASK(hi + 1 - j);                                                                                   \
        __m##W e = EXP(_mm##W##_sub_ps(LOADM(row + j, k), mb));                                                       \
        e = _mm##W##_and_ps(e, MASKF(k));                                                                             \
        STOREM(row + j, k, e);                                                                                        \
        acc = _mm##W##_add_ps(acc, e);                                                                                \
    }                                                                                                                 \
    float sum = HSUM(acc);                                                                                            \
    const __m##W inv = _mm##W##_set1_ps(1 / sum);                                                                     \
    for (j = lo; j + lanes <= hi + 1; j += lanes) _mm##W##_storeu_ps(row + j, _mm##W##_mul_ps(_mm##W##_loadu_ps(row + j), inv)); \
    for (; j <= hi; j++) row[j] *= 1 / sum;                                                                           \
    for (j = 0; j < lo; j++) row[j] = 0;                                                                              \
    for (j = hi + 1; j < n; j++) row[j] = 0;                                                                          \
    return m + logf(sum);

#define NC_SOFTMAX_RECOMPUTE_BODY(W, EXP, MASKT, MASK, LOADM, STOREM)                                                 \
    const int lanes = W / 32;                                                                                         \
    const __m##W lb = _mm##W##_set1_ps(lse);                                                                          \
    int j = lo;                                                                                                       \
    for (; j + lanes <= hi + 1; j += lanes) _mm##W##_storeu_ps(row + j, EXP(_mm##W##_sub_ps(_mm##W##_loadu_ps(row + j), lb))); \
    if (j <= hi) {                                                                                                    \
        MASKT k = MASK(hi + 1 - j);                                                                                   \
        STOREM(row + j, k, EXP(_mm##W##_sub_ps(LOADM(row + j, k), lb)));                                              \
    }                                                                                                                 \
    for (j = 0; j < lo; j++) row[j] = 0;                                                                              \
    for (j = hi + 1; j < n; j++) row[j] = 0;

// The two kernels at one width: SUFFIX names them, TARGET is their instruction set
#define NC_SOFTMAX_ROW_KERNELS(W, SUFFIX, TARGET, EXP, HSUM, HMAX, MASKT, MASK, LOADM, STOREM)                        \
    __attribute__((target(TARGET))) static float softmax_window_##SUFFIX(float *row, int n, int lo, int hi) {          \
        NC_SOFTMAX_WINDOW_BODY(W, EXP, HSUM, HMAX, MASKT, MASK, LOADM, STOREM)                                         \
    }                                                                                                                 \
    __attribute__((target(TARGET))) static void softmax_window_recompute_##SUFFIX(float *row, int n, int lo, int hi,   \
                                                                                   float lse) {                       \
        NC_SOFTMAX_RECOMPUTE_BODY(W, EXP, MASKT, MASK, LOADM, STOREM)                                                  \
    }

// AVX2: the mask is a vector of all-ones lanes, applied by maskload/maskstore
#define LOADM8(p, k) _mm256_maskload_ps(p, k)
#define STOREM8(p, k, v) _mm256_maskstore_ps(p, k, v)
#define MASKF(k) _mm256_castsi256_ps(k)
NC_SOFTMAX_ROW_KERNELS(256, avx2, "avx2,fma", nc_exp8, nc_hsum8, nc_hmax8, __m256i, nc_mask8, LOADM8, STOREM8)
#undef MASKF

// AVX-512: a bit mask
#define LOADM16(p, k) _mm512_maskz_loadu_ps(k, p)
#define STOREM16(p, k, v) _mm512_mask_storeu_ps(p, k, v)
#define MASKF(k) _mm512_castsi512_ps(_mm512_maskz_set1_epi32(k, -1))
NC_SOFTMAX_ROW_KERNELS(512, avx512, "avx512f,avx512dq,fma", nc_exp16, _mm512_reduce_add_ps, _mm512_reduce_max_ps, __mmask16,
                       nc_mask16, LOADM16, STOREM16)
#undef MASKF
#endif

NC_DISPATCH_WIDTHS(float, softmax_window, (float *row, int n, int lo, int hi), (row, n, lo, hi))
NC_DISPATCH_WIDTHS_VOID(softmax_window_recompute, (float *row, int n, int lo, int hi, float lse), (row, n, lo, hi, lse))

// dS = P (dP - rowdot) scale: a plain loop, compiled at each width (kernel_dispatch.h)
NC_BODY void softmax_backward_row_body(const float *p, float *dp, int n, float rowdot, float scale) {
    for (int j = 0; j < n; j++) dp[j] = p[j] * (dp[j] - rowdot) * scale;
}
NC_DISPATCH_VOID(softmax_backward_row, (const float *p, float *dp, int n, float rowdot, float scale), (p, dp, n, rowdot, scale))
