// The logits of the LM head (see ckernels.h): the softcap, cap * tanh(x / cap), in place, and one row of the
// training loss over softcapped logits. Decoding applies the softcap to every vocabulary logit of every row each
// step: 32768 per row. Written with Swift's SIMD8 (baseline x86-64, so SSE) it cost 6 ns a logit,
// 0.20 ms of a 2.1 ms d6 decode step; here it is AVX2 + FMA (0.8-1.1 ns a logit on Zen 4), or AVX-512 where the CPU
// has it (0.4-0.6 ns there, though Zen 4 runs 512-bit operations as two halves).
#include "ckernels.h"

#include <math.h>

#include "kernel_dispatch.h"
#include "scalar_math.h"

static void softcap_portable(float *x, long n, float cap) {
    const float inv = 1 / cap;
    for (long i = 0; i < n; i++) x[i] = cap * nc_tanh_scalar(x[i] * inv);
}

#ifdef NC_X86
// The tails of fewer floats than a vector go through the same vector code under a mask (x86_simd.h), so every logit
// gets the same function. AVX2 masks are vectors (maskload, maskstore, and), AVX-512's are bits.
#define TAIL_LOAD8(p, n) _mm256_maskload_ps(p, nc_mask8(n))
#define TAIL_STORE8(p, v, n) _mm256_maskstore_ps(p, nc_mask8(n), v)
#define TAIL_ZERO8(v, n) _mm256_and_ps(v, _mm256_castsi256_ps(nc_mask8(n)))
#define TAIL_LOAD16(p, n) _mm512_maskz_loadu_ps(nc_mask16(n), p)
#define TAIL_STORE16(p, v, n) _mm512_mask_storeu_ps(p, nc_mask16(n), v)
#define TAIL_ZERO16(v, n) _mm512_maskz_mov_ps(nc_mask16(n), v)

#define NC_SOFTCAP_BODY(W, TANH, TAIL_LOAD, TAIL_STORE)                                                               \
    const long lanes = W / 32;                                                                                        \
    const __m##W c = _mm##W##_set1_ps(cap), inv = _mm##W##_set1_ps(1 / cap);                                          \
    long i = 0;                                                                                                       \
    for (; i + lanes <= n; i += lanes) _mm##W##_storeu_ps(x + i, _mm##W##_mul_ps(c, TANH(_mm##W##_mul_ps(_mm##W##_loadu_ps(x + i), inv)))); \
    if (i < n) TAIL_STORE(x + i, _mm##W##_mul_ps(c, TANH(_mm##W##_mul_ps(TAIL_LOAD(x + i, n - i), inv))), n - i);

__attribute__((target("avx2,fma"))) static void softcap_avx2(float *x, long n, float cap) {
    NC_SOFTCAP_BODY(256, nc_tanh8, TAIL_LOAD8, TAIL_STORE8)
}
__attribute__((target("avx512f,avx512dq"))) static void softcap_avx512(float *x, long n, float cap) {
    NC_SOFTCAP_BODY(512, nc_tanh16, TAIL_LOAD16, TAIL_STORE16)
}
#endif
NC_DISPATCH_WIDTHS_VOID(softcap, (float *x, long n, float cap), (x, n, cap))

// One row of the LM head's loss: softcap, log-sum-exp, the loss and (training) the logit gradient, in two passes
// over the row while it is in cache. Softcapped logits lie in [-cap, cap], so exp cannot overflow and no max pass is
// needed. The gradient: d loss / d logit = (softmax - onehot(target)) (1 - tanh^2) grad_scale.
// Portable: scalar_math.h's exp and tanh in loops the compiler vectorizes (its sum may be reassociated to that end).
// In Swift's SIMD8 (SSE here) this was 17% of a d4 training step.
static float softcap_xent_row_portable(float *row, long vocab, float cap, int target, int want_grad, float grad_scale, float *ex) {
    const float inv_cap = 1 / cap;
    for (long j = 0; j < vocab; j++) {
        row[j] = cap * nc_tanh_scalar(row[j] * inv_cap);
        ex[j] = nc_exp_scalar(row[j]);
    }
    float sum = 0;
    {
        NC_REASSOCIATE
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
// The same two passes in vectors of W bits (256 with AVX2, 512 with AVX-512), the tail under a mask.
#define NC_XENT_ROW_BODY(W, TANH, EXP, HSUM, TAIL_LOAD, TAIL_STORE, TAIL_ZERO)                                                                          \
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

__attribute__((target("avx2,fma"))) static float softcap_xent_row_avx2(float *row, long vocab, float cap, int target,
                                                                         int want_grad, float grad_scale, float *ex) {
    NC_XENT_ROW_BODY(256, nc_tanh8, nc_exp8, nc_hsum8, TAIL_LOAD8, TAIL_STORE8, TAIL_ZERO8)
}
__attribute__((target("avx512f,avx512dq,fma"))) static float softcap_xent_row_avx512(float *row, long vocab, float cap, int target,
                                                                                      int want_grad, float grad_scale, float *ex) {
    NC_XENT_ROW_BODY(512, nc_tanh16, nc_exp16, _mm512_reduce_add_ps, TAIL_LOAD16, TAIL_STORE16, TAIL_ZERO16)
}
#endif

NC_DISPATCH_WIDTHS(float, softcap_xent_row, (float *row, long vocab, float cap, int target, int want_grad, float grad_scale, float *ex),
                   (row, vocab, cap, target, want_grad, grad_scale, ex))
