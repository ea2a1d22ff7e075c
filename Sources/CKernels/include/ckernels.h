#ifndef NANOCHAT_CKERNELS_H
#define NANOCHAT_CKERNELS_H

/// C = alpha * A B^T + beta * C for a skinny A: A is m x k (row stride lda), B is n x k (row stride ldb, e.g. a
/// weight matrix [out, in]), C is m x n (row stride ldc). Meant for m of 2 to 16 (decoding a batch of rows),
/// where BLAS's sgemm packs all of B for only a few rows and runs far below both its FLOP and bandwidth rates.
/// Reads B once, keeps the rows of A in cache. Single-threaded: callers split n between threads.
/// Uses AVX2 and FMA when nc_kernel_level() allows, portable C otherwise.
void nc_sgemm_skinny_nt(int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                        float beta, float *c, int ldc);

#include <stdint.h>

/// Quantized inference weights (quant_gemm.c). A weight matrix W is [n, k] row-major (out x in), as a Linear's.
/// bf16: the upper 16 bits of each float32, rounded to nearest even. int8 (q8): one float scale per block of
/// NC_Q8_BLOCK weights along k (scale = max |w| / 127), k a multiple of the block.
#define NC_Q8_BLOCK 32
uint16_t nc_float_to_bf16(float x);
void nc_quantize_bf16(const float *w, uint16_t *out, long count);
void nc_quantize_q8(const float *w, int n, int k, int8_t *q, float *scales);
void nc_dequant_bf16(const uint16_t *w, long count, float *out);
void nc_dequant_q8(const int8_t *q, const float *scales, int n, int k, float *out);
/// C[m, n] = A[m, k] W^T for any m (meant for decoding: 1 to 16 rows; W is read once for all of them). Single-
/// threaded: callers split n between threads. AVX2 + FMA when the CPU has them, portable C otherwise.
void nc_gemm_bf16_nt(int m, int n, int k, const float *a, int lda, const uint16_t *w, float *c, int ldc);
void nc_gemm_q8_nt(int m, int n, int k, const float *a, int lda, const int8_t *q, const float *scales, float *c, int ldc);
/// One row of activations for nc_gemv_q8_a16 (or m rows, stride lda): rounded to int16 with one float scale per block
/// of NC_Q8_BLOCK (scale = max |a| / 32767; a NaN or infinity makes its block's scale NaN or infinite):
/// xq [m, k], xs [m, k / NC_Q8_BLOCK].
void nc_quantize_a16(int m, int k, const float *a, int lda, int16_t *xq, float *xs);
/// c[n] = W a for one row a given as nc_quantize_a16 made it: each block's dot product in exact integer arithmetic,
/// then times both scales. Single-threaded, like the others.
void nc_gemv_q8_a16(int n, int k, const int16_t *xq, const float *xs, const int8_t *q, const float *scales, float *c);

/// Attention of one query row q[d] over `span` cached positions (decode_attention.c): out[d] = softmax(scale q K^T) V
/// with K and V [span, d] rows side by side. scores: span floats of scratch. AVX2 + FMA when d is a multiple of 8.
void nc_attend_one(const float *q, const float *k, const float *v, int span, int d, float scale, float *scores, float *out);
/// The same with keys and values in bf16 (the upper half of each float32; the KV cache of quantized inference).
void nc_attend_one_bf16(const float *q, const uint16_t *k, const uint16_t *v, int span, int d, float scale, float *scores,
                        float *out);

/// The softmax rows of the training attention (attention_rows.c). A query's scores row[0..<n], of which the keys lo...hi
/// (inclusive) are in its window: nc_softmax_window turns the row into the softmax over lo...hi (0 outside) and returns
/// its log-sum-exp; nc_softmax_window_recompute sets row[j] = exp(row[j] - lse) on lo...hi (0 outside), the backward
/// pass's probabilities from the saved log-sum-exp; nc_softmax_backward_row sets dp[j] = p[j] (dp[j] - rowdot) scale.
/// AVX-512 or AVX2 + FMA as nc_kernel_level() allows, portable C (vectorized by the compiler) otherwise.
float nc_softmax_window(float *row, int n, int lo, int hi);
void nc_softmax_window_recompute(float *row, int n, int lo, int hi, float lse);
void nc_softmax_backward_row(const float *p, float *dp, int n, float rowdot, float scale);

/// x[i] = cap * tanh(x[i] / cap) for i in 0..<n (logits.c): the logit softcap. AVX-512 or AVX2 + FMA when the CPU has them
/// (a few ulp from tanh; scalar_math.h has the same formula for the portable path, which the compiler vectorizes).
void nc_softcap(float *x, long n, float cap);
/// One row of the LM head's training loss (logits.c): row[vocab] is softcapped in place, and the row's cross-entropy
/// log(sum_j exp(row[j])) - row[target] is returned (0 when target < 0). With want_grad the row is then overwritten by
/// the loss's gradient with respect to the logits before the softcap, times grad_scale:
/// (softmax - onehot(target)) (1 - tanh^2) grad_scale, all zero when target < 0. ex: vocab floats of scratch.
/// AVX-512 or AVX2 + FMA (the softcap's exp and tanh) as nc_kernel_level() allows, portable C (vectorized by the
/// compiler) otherwise.
float nc_softcap_xent_row(float *row, long vocab, float cap, int target, int want_grad, float grad_scale, float *ex);

/// Row and element-wise kernels of training (elementwise.c), compiled at three widths and picked by nc_kernel_level():
/// nc_rmsnorm_row: y[c] = x / sqrt(mean(x^2) + eps) (eps: float32's machine epsilon), returns 1 / sqrt(mean(x^2) + eps);
/// nc_rmsnorm_backward_row: dx += inv (g - y mean(g . y)) for y the forward's output and inv what it returned.
float nc_rmsnorm_row(const float *x, float *y, int c);
void nc_rmsnorm_backward_row(const float *g, const float *y, float inv, int c, float *dx);
/// The rotary embedding of one head's row (half-split: y1 = x1 cos + x2 sin, y2 = -x1 sin + x2 cos, with cs and sn the
/// d/2 cosines and sines of its position), then RMSNorm over the d values and times gain; returns the norm's 1 / rms.
/// The backward adds the gradient with respect to x into dx, from g (the output's gradient) and out (the output).
float nc_rotary_norm_row(const float *x, float *y, const float *cs, const float *sn, int d, float gain);
void nc_rotary_norm_backward_row(const float *g, const float *out, const float *cs, const float *sn, float inv, float gain,
                                 int d, float *dx);
/// AdamW on n elements: p *= decay; m += (1 - beta1)(g - m); v += (1 - beta2)(g^2 - v);
/// p -= step_size m / (sqrt(v) / bias2_sqrt + eps), with g = grad * grad_scale (grad NULL: zero).
void nc_adamw_update(float *p, float *m, float *v, const float *grad, long n, float grad_scale, float decay, float beta1,
                     float beta2, float step_size, float bias2_sqrt, float eps);
/// Muon's Nesterov momentum (m += (1 - mu)(g - m); u = g + mu (m - g), g = grad * grad_scale, grad NULL: zero) and its
/// update with cautious weight decay (p -= lr u + (u p >= 0 ? lr wd p : 0)).
void nc_muon_momentum(float *m, const float *grad, float *u, long n, float grad_scale, float mu);
void nc_muon_update(float *p, const float *u, long n, float lr, float wd);

/// The worker pool behind Threading.parallelFor (worker_pool.c): threads - 1 helper threads that poll for work for
/// spin_ns after each region before they sleep. Returns the number of threads regions run on (helpers + caller).
/// Starting it again does nothing.
typedef void (*nc_pool_fn)(void *ctx, long index);
int nc_pool_start(int threads, long spin_ns);
/// Runs fn(ctx, i) for i in 0..<count on the caller and the helpers; returns when all are done. A nested call, or
/// a call while another thread runs a region, runs its indices inline on the calling thread.
void nc_pool_run(long count, nc_pool_fn fn, void *ctx);
/// Idle helpers stop polling and sleep until the next region (before work on other threads, e.g. BLAS's).
void nc_pool_park(void);

/// The CPU's spin-wait hint (x86 pause, ARM yield): a thread polling a flag frees the core's shared resources
/// while it waits (Threading's worker pool).
static inline void nc_cpu_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

// The clock the core runs at now, in GHz, from a chain of dependent adds timed for `seconds` (best of the tries);
// 0 where it cannot be measured (not x86-64).
double nc_measure_clock_ghz(double seconds);

// The CPU's vendor, family, model, brand string and the vector extensions it has *and* the OS lets it use
// (cpu_features.c, CPUID and XGETBV); all zero where this is not x86-64.
typedef struct {
    char vendor[13];
    char brand[49];
    int family, model;
    int sse42, avx, fma, avx2, avx512f, avx512dq, avx512bw, avx512vl, avx512vnni, avx512bf16;
    int amx_tile, amx_int8, amx_bf16;
} nc_cpu_features;
nc_cpu_features nc_cpu_detect(void);

/// The kernel set every C kernel here uses (kernel_level.c): 0 portable C, 1 AVX2 + FMA, 2 AVX-512 (F, BW, VL, DQ,
/// with the OS saving the registers; the kernels without an AVX-512 body run their AVX2 one there). The
/// widest the CPU supports (nc_kernel_supported), unless nc_kernel_choice (tests: 0, 1, 2) or
/// NANOCHAT_KERNELS=portable|avx2|avx512 asks for less.
int nc_kernel_supported(void);
int nc_kernel_level(void);
extern int nc_kernel_choice;

#endif
