// The logits of the LM head (see ckernels.h): the softcap, cap * tanh(x / cap), in place, and one row of the
// training loss over softcapped logits. Decoding applies the softcap to every vocabulary logit of every row each
// step: 32768 per row. Written with Swift's SIMD8 (baseline x86-64, so SSE) it cost 6 ns a logit,
// 0.20 ms of a 2.1 ms d6 decode step; here it is AVX2 + FMA (0.8-1.1 ns a logit on Zen 4), or AVX-512 where the CPU
// has it (0.4-0.6 ns there, though Zen 4 runs 512-bit operations as two halves).
#include "ckernels.h"

#include <math.h>

#include "scalar_math.h"
#include "x86_simd.h"

#ifdef NC_X86
__attribute__((target("avx2,fma"))) static void softcap_avx2(float *x, long n, float cap) {
    const __m256 c = _mm256_set1_ps(cap), inv = _mm256_set1_ps(1 / cap);
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(c, nc_tanh8(_mm256_mul_ps(_mm256_loadu_ps(x + i), inv))));
    if (i < n) {  // the tail through the same vector code, so every logit gets the same function
        float tail[8] = {0};
        for (long j = i; j < n; j++) tail[j - i] = x[j];
        _mm256_storeu_ps(tail, _mm256_mul_ps(c, nc_tanh8(_mm256_mul_ps(_mm256_loadu_ps(tail), inv))));
        for (long j = i; j < n; j++) x[j] = tail[j - i];
    }
}

// AVX-512: sixteen lanes, the tail under a mask instead of through a copy
__attribute__((target("avx512f,avx512dq"))) static void softcap_avx512(float *x, long n, float cap) {
    const __m512 c = _mm512_set1_ps(cap), inv = _mm512_set1_ps(1 / cap);
    long i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(c, nc_tanh16(_mm512_mul_ps(_mm512_loadu_ps(x + i), inv))));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(c, nc_tanh16(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv))));
    }
}
#endif

void nc_softcap(float *x, long n, float cap) {
#ifdef NC_X86
    int level = nc_kernel_level();
    if (level >= 2) { softcap_avx512(x, n, cap); return; }
    if (level >= 1) { softcap_avx2(x, n, cap); return; }
#endif
    const float inv = 1 / cap;
    for (long i = 0; i < n; i++) x[i] = cap * nc_tanh_scalar(x[i] * inv);
}

// One row of the LM head's loss: softcap, log-sum-exp, the loss and (training) the logit gradient, in two passes
// over the row while it is in cache. Softcapped logits lie in [-cap, cap], so exp cannot overflow and no max pass is
// needed. The gradient: d loss / d logit = (softmax - onehot(target)) (1 - tanh^2) grad_scale.
// Portable: scalar_math.h's exp and tanh in loops the compiler vectorizes (its sum may be reassociated to that end).
// In Swift's SIMD8 (SSE here) this was 17% of a d4 training step.
static float xent_row_portable(float *row, long vocab, float cap, int target, int want_grad, float grad_scale, float *ex) {
    const float inv_cap = 1 / cap;
    for (long j = 0; j < vocab; j++) {
        row[j] = cap * nc_tanh_scalar(row[j] * inv_cap);
        ex[j] = nc_exp_scalar(row[j]);
    }
    float sum = 0;
    {
#ifdef __clang__
#pragma clang fp reassociate(on)
#endif
        for (long j = 0; j < vocab; j++) sum += ex[j];
    }
    float target_logit = target >= 0 ? row[target] : 0;
    float loss = target >= 0 ? logf(sum) - target_logit : 0;
    if (!want_grad) return loss;
    if (target < 0) {
        for (long j = 0; j < vocab; j++) row[j] = 0;
        return loss;
    }
    float scale = grad_scale / sum;
    for (long j = 0; j < vocab; j++) {
        float th = row[j] * inv_cap;
        row[j] = ex[j] * scale * (1 - th * th);
    }
    float tt = target_logit * inv_cap;
    row[target] -= (1 - tt * tt) * grad_scale;
    return loss;
}

#ifdef NC_X86
// The same two passes in vectors of W bits (256 with AVX2, 512 with AVX-512). LOAD/STORE move a vector to or from
// float index j; the tail of fewer than W/32 floats goes through TAIL_LOAD/TAIL_STORE (a copy with AVX2, a mask with
// AVX-512), so that every logit gets the same function.
#define NC_XENT_ROW_BODY(W, TANH, EXP, HSUM)                                                                          \
    const long lanes = W / 32;                                                                                        \
    const __m##W c = _mm##W##_set1_ps(cap), inv = _mm##W##_set1_ps(1 / cap);                                          \
    __m##W acc = _mm##W##_setzero_ps();                                                                               \
    for (long j = 0; j < vocab; j += lanes) {                                                                         \
        long left = vocab - j;                                                                                        \
        __m##W x = left >= lanes ? _mm##W##_loadu_ps(row + j) : TAIL_LOAD(row + j, left);                             \
        __m##W t = _mm##W##_mul_ps(c, TANH(_mm##W##_mul_ps(x, inv)));                                                 \
        __m##W e = EXP(t);                                                                                            \
        if (left < lanes) e = TAIL_ZERO(e, left); /* lanes past the row add nothing to the sum */                      \
        if (left >= lanes) { _mm##W##_storeu_ps(row + j, t); _mm##W##_storeu_ps(ex + j, e); }                         \
        else { TAIL_STORE(row + j, t, left); TAIL_STORE(ex + j, e, left); }                                           \
        acc = _mm##W##_add_ps(acc, e);                                                                                \
    }                                                                                                                 \
    float sum = HSUM(acc);                                                                                            \
    float target_logit = target >= 0 ? row[target] : 0;                                                               \
    float loss = target >= 0 ? logf(sum) - target_logit : 0;                                                          \
    if (!want_grad) return loss;                                                                                      \
    if (target < 0) {                                                                                                 \
        for (long j = 0; j < vocab; j++) row[j] = 0;                                                                  \
        return loss;                                                                                                  \
    }                                                                                                                 \
    const __m##W scale = _mm##W##_set1_ps(grad_scale / sum), one = _mm##W##_set1_ps(1.f);                            \
    for (long j = 0; j < vocab; j += lanes) {                                                                         \
        long left = vocab - j;                                                                                        \
        __m##W th = _mm##W##_mul_ps(left >= lanes ? _mm##W##_loadu_ps(row + j) : TAIL_LOAD(row + j, left), inv);       \
        __m##W e = left >= lanes ? _mm##W##_loadu_ps(ex + j) : TAIL_LOAD(ex + j, left);                               \
        __m##W g = _mm##W##_mul_ps(_mm##W##_mul_ps(e, scale), _mm##W##_fnmadd_ps(th, th, one));                       \
        if (left >= lanes) _mm##W##_storeu_ps(row + j, g); else TAIL_STORE(row + j, g, left);                         \
    }                                                                                                                 \
    float tt = target_logit / cap;                                                                                    \
    row[target] -= (1 - tt * tt) * grad_scale;                                                                        \
    return loss;

// AVX2 tails: through an 8-float copy
__attribute__((target("avx2,fma"))) static inline __m256 tail_load8(const float *p, long n) {
    float t[8] = {0};
    for (long i = 0; i < n; i++) t[i] = p[i];
    return _mm256_loadu_ps(t);
}
__attribute__((target("avx2,fma"))) static inline void tail_store8(float *p, __m256 v, long n) {
    float t[8];
    _mm256_storeu_ps(t, v);
    for (long i = 0; i < n; i++) p[i] = t[i];
}
__attribute__((target("avx2,fma"))) static inline __m256 tail_zero8(__m256 v, long n) {
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), idx)));
}
// AVX-512 tails: under a mask
#define NC_MASK16(n) ((__mmask16)((1u << (n)) - 1))
__attribute__((target("avx512f"))) static inline __m512 tail_load16(const float *p, long n) { return _mm512_maskz_loadu_ps(NC_MASK16(n), p); }
__attribute__((target("avx512f"))) static inline void tail_store16(float *p, __m512 v, long n) { _mm512_mask_storeu_ps(p, NC_MASK16(n), v); }
__attribute__((target("avx512f"))) static inline __m512 tail_zero16(__m512 v, long n) { return _mm512_maskz_mov_ps(NC_MASK16(n), v); }
__attribute__((target("avx512f"))) static inline float hsum16(__m512 v) { return _mm512_reduce_add_ps(v); }

#define TAIL_LOAD tail_load8
#define TAIL_STORE tail_store8
#define TAIL_ZERO tail_zero8
__attribute__((target("avx2,fma"))) static float xent_row_avx2(float *row, long vocab, float cap, int target, int want_grad,
                                                                 float grad_scale, float *ex) {
    NC_XENT_ROW_BODY(256, nc_tanh8, nc_exp8, nc_hsum8)
}
#undef TAIL_LOAD
#undef TAIL_STORE
#undef TAIL_ZERO
#define TAIL_LOAD tail_load16
#define TAIL_STORE tail_store16
#define TAIL_ZERO tail_zero16
__attribute__((target("avx512f,avx512dq,fma"))) static float xent_row_avx512(float *row, long vocab, float cap, int target,
                                                                              int want_grad, float grad_scale, float *ex) {
    NC_XENT_ROW_BODY(512, nc_tanh16, nc_exp16, hsum16)
}
#undef TAIL_LOAD
#undef TAIL_STORE
#undef TAIL_ZERO
#endif

float nc_softcap_xent_row(float *row, long vocab, float cap, int target, int want_grad, float grad_scale, float *ex) {
#ifdef NC_X86
    int level = nc_kernel_level();
    if (level >= 2) return xent_row_avx512(row, vocab, cap, target, want_grad, grad_scale, ex);
    if (level >= 1) return xent_row_avx2(row, vocab, cap, target, want_grad, grad_scale, ex);
#endif
    return xent_row_portable(row, vocab, cap, target, want_grad, grad_scale, ex);
}
