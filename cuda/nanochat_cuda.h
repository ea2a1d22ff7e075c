// nanochat's CUDA library: the C ABI that Swift (through dlopen) and the op checks call.
//
// Plain pointers to device memory, int64_t sizes, row-major tensors, and an int status (0 = ok; otherwise
// nc_error_string says what failed). Device memory comes only from nc_malloc (and the library's own scratch, through
// the same caching allocator); every op runs on the context's stream and returns without synchronising.
// Precision: fp32 tensors, except where a pointer is marked bf16 (void *, with a flag or a _bf16 name); matrix products
// may run their inputs in bf16 (upstream's policy: fp32 master weights, bf16 products with fp32 accumulation).
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nc_context nc_context;

// --- context, memory, errors (context.cu)
int nc_create(nc_context **ctx, int device);
void nc_destroy(nc_context *ctx);
const char *nc_error_string(nc_context *ctx);  // the last failure, with the call that failed
int nc_device_info(nc_context *ctx, char *name, int name_len, int *sm_count, int64_t *memory_bytes);
int nc_malloc(nc_context *ctx, void **ptr, int64_t bytes);
int nc_free(nc_context *ctx, void *ptr);
int nc_copy_to_device(nc_context *ctx, void *dst, const void *src, int64_t bytes);
int nc_copy_to_host(nc_context *ctx, void *dst, const void *src, int64_t bytes);
int nc_synchronize(nc_context *ctx);
int nc_zero(nc_context *ctx, void *ptr, int64_t bytes);  // asynchronous, on the context's stream
int nc_copy_on_device(nc_context *ctx, void *dst, const void *src, int64_t bytes);  // asynchronous
// Device memory comes from a caching allocator (caching_allocator.h): nc_free keeps a block for a later nc_malloc
// that fits, so a training step after the first makes no device allocation. Free and total memory on the card, and
// the most bytes handed out at once (the run's peak, as PyTorch's max_memory_allocated).
int nc_memory_info(nc_context *ctx, int64_t *free_bytes, int64_t *total_bytes, int64_t *peak_bytes);
// The allocator's bookkeeping: bytes handed out now and at the most, bytes held from the device, device allocations.
int nc_allocator_stats(nc_context *ctx, int64_t *bytes_in_use, int64_t *peak_bytes, int64_t *reserved_bytes,
                       int64_t *device_allocations);

// --- matrix products (matmul.cu): C[m,n] = alpha * op(A) op(B) + beta * C, row-major fp32 A [m,k] (or [k,m]
// when trans_a), B [k,n] (or [n,k] when trans_b). bf16 != 0 rounds A and B to bf16 for the product (fp32
// accumulation, fp32 C); bf16 == 0 is exact fp32 (no TF32), the mode the fixtures check.
int nc_matmul(nc_context *ctx, float *c, const float *a, const float *b, int64_t m, int64_t n, int64_t k,
              int trans_a, int trans_b, float alpha, float beta, int bf16);

// the same for `batch` products, the matrices of each operand `m*k`, `k*n` and `m*n` floats apart
int nc_matmul_batched(nc_context *ctx, float *c, const float *a, const float *b, int64_t batch, int64_t m, int64_t n,
                      int64_t k, int trans_a, int trans_b, float alpha, float beta, int bf16);

// The same product with operands that may already be bf16 (a_bf16 / b_bf16 != 0: a or b holds bf16 values, such as a
// weight's bf16 copy made once per optimizer step by nc_to_bf16), read as they are; fp32 operands are rounded here as
// in nc_matmul's bf16 mode. Always bf16 inputs with fp32 accumulation and fp32 C.
int nc_matmul_mixed(nc_context *ctx, float *c, const void *a, int a_bf16, const void *b, int b_bf16, int64_t m, int64_t n,
                    int64_t k, int trans_a, int trans_b, float alpha, float beta);
// The same product with C written in bf16 (alpha 1, beta 0; fp32 accumulation, rounded once at the end): the logits
// of the bf16 loss, which the loss reads and overwrites with their gradient in bf16 for the next two products.
int nc_matmul_bf16_out(nc_context *ctx, void *c, const void *a, int a_bf16, const void *b, int b_bf16, int64_t m, int64_t n,
                       int64_t k, int trans_a, int trans_b);
// dst[i] = src[i] rounded to bf16 (nearest even): a weight's bf16 copy
int nc_to_bf16(nc_context *ctx, void *dst, const float *src, int64_t n);
// dst[i] = src[i] widened from bf16 to fp32 (exact): a bf16 activation for an op that reads fp32 (the KV cache's)
int nc_from_bf16(nc_context *ctx, float *dst, const void *src, int64_t n);
// dst[r * ld + c] = src[r * cols + c] rounded to bf16 (src_bf16: copied; 0 when src is null) for r < rows, c < cols: one
// block of columns of a bf16 matrix with rows of ld elements (v's gradient beside q's and k's in the projections' joint
// gradient)
int nc_to_bf16_rows(nc_context *ctx, void *dst, int64_t ld, const void *src, int src_bf16, int64_t rows, int64_t cols);

// Outputs marked y_bf16 (and inputs marked *_bf16) below hold bf16 values (rounded to nearest even once, the math in
// fp32): the activations that only bf16 products and attention read, kept in half the memory as upstream's autocast
// keeps them. A backward that reads such an output reads the bf16 values.

// --- RMSNorm over the last dimension, eps = FLT_EPSILON (norm.cu): y = x * rstd, rstd = 1/sqrt(mean(x^2)+eps)
int nc_rmsnorm_forward(nc_context *ctx, void *y, int y_bf16, float *rstd, const float *x, int64_t rows, int64_t cols);
// mixed = alpha[ia] a + beta[ib] b (nc_scalar_mix_forward), then y, rstd = its RMSNorm (nc_rmsnorm_forward), in one
// pass over the rows: each layer's input mix and the norm its attention reads
int nc_mix_rmsnorm_forward(nc_context *ctx, float *mixed, void *y, int y_bf16, float *rstd, const float *a, const float *b,
                           const float *alpha, int64_t ia, const float *beta, int64_t ib, int64_t rows, int64_t cols);
// dx (+)= rstd * (dy - y * mean(dy * y)); accumulate != 0 adds into dx
int nc_rmsnorm_backward(nc_context *ctx, float *dx, const float *dy, const void *y, int y_bf16, const float *rstd,
                        int64_t rows, int64_t cols, int accumulate);

// --- rotary (half-split, base tables cos/sin [positions, d/2]) then RMSNorm over d, times gain (rotary.cu).
// x, y: [b, t, h, d]; row (b, t, h) uses position offset + t.
int nc_rotary_norm_forward(nc_context *ctx, float *y, float *rstd, const float *x, const float *cos_t,
                           const float *sin_t, int64_t b, int64_t t, int64_t h, int64_t d, int64_t offset, float gain);
int nc_rotary_norm_backward(nc_context *ctx, float *dx, const float *dy, const float *y, const float *rstd,
                            const float *cos_t, const float *sin_t, int64_t b, int64_t t, int64_t h, int64_t d,
                            int64_t offset, float gain, int accumulate);
// The backward written (not added) in bf16 into rows of dx_ld elements: row (b, t, head) at (b * t) * dx_ld + head * d
// (the q or k block of the projections' joint bf16 gradient, which one product then reads for x's gradient).
// dy_bf16: dy holds bf16 (attention's gradient of q or k, written in bf16).
int nc_rotary_norm_backward_bf16_rows(nc_context *ctx, void *dx, int64_t dx_ld, const void *dy, int dy_bf16, const void *y, int y_bf16,
                                      const float *rstd, const float *cos_t, const float *sin_t, int64_t b, int64_t t, int64_t h,
                                      int64_t d, int64_t offset, float gain);
// The forward for an attention layer's queries and keys in one launch: q [b, t, hq, d] into yq, k [b, t, hk, d] into yk,
// with their rstd, each as nc_rotary_norm_forward would. bf16_rows != 0: q, k, yq and yk hold bf16 (the products write
// q and k in bf16, as upstream's autocast does; attention reads yq and yk in bf16).
int nc_rotary_norm_qk_forward(nc_context *ctx, void *yq, float *rstd_q, const void *q, int64_t hq, void *yk, float *rstd_k,
                              const void *k, int64_t hk, const float *cos_t, const float *sin_t, int64_t b, int64_t t, int64_t d,
                              int64_t offset, float gain, int bf16_rows);

// --- causal attention with a sliding window and GQA, exact fp32 (attention.cu). q, o: [B, T, H, D]; k, v:
// [B, T, Hkv, D]; query i sees keys i - window ..i; lse: [B, H, T] saved for the backward; D is 32, 64 or 128.
int nc_attention_forward(nc_context *ctx, float *o, float *lse, const float *q, const float *k, const float *v,
                         int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D, int64_t window);
// accumulate != 0 adds the gradients into dq, dk, dv; 0 writes them (their old contents may be anything: a fresh
// gradient needs no zero-fill first); delta: [B, H, T] scratch.
int nc_attention_backward(nc_context *ctx, float *dq, float *dk, float *dv, float *delta, const float *q,
                          const float *k, const float *v, const float *o, const float *dout, const float *lse, int64_t B,
                          int64_t T, int64_t H, int64_t Hkv, int64_t D, int64_t window, int accumulate);

// The same on the tensor cores (attention_bf16.cu): q, k, v and o in bf16, fp32 accumulation, softmax and statistics;
// D is 64 or 128. dout is fp32 or (dout_bf16) bf16; dq, dk, dv are fp32, written or added (accumulate), or (grads_bf16,
// accumulate 0) written in bf16: the gradients as cuDNN makes them, for ops that read them so.
int nc_attention_forward_bf16(nc_context *ctx, void *o, float *lse, const void *q, const void *k, const void *v,
                              int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D, int64_t window);
int nc_attention_backward_bf16(nc_context *ctx, void *dq, void *dk, void *dv, int grads_bf16, float *delta, const void *q,
                               const void *k, const void *v, const void *o, const void *dout, int dout_bf16, const float *lse,
                               int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D, int64_t window, int accumulate);

// --- the engine's KV cache (kv_cache.cu): per layer [rows, Hkv, capacity, D], head-major, fp32 elements or, with
// bf16 != 0, bf16 ones (rounded to nearest even). rows[b] is the cache row of batch row b and starts[b] the position
// its first new token takes (both device int32 [B]).
// Writes the chunk's keys or values src [B, T, Hkv, D] at those positions.
int nc_kv_append(nc_context *ctx, void *cache, const float *src, const int32_t *rows, const int32_t *starts, int64_t b,
                 int64_t t, int64_t hkv, int64_t d, int64_t capacity, int bf16);
// out, q: [B, T, H, D]; query (b, i) at position p = starts[b] + i attends the cached positions max(0, p - window)..p
// of its row (already appended); fp32 scores, softmax and sums.
int nc_cached_attention(nc_context *ctx, float *out, const float *q, const void *k_cache, const void *v_cache,
                        const int32_t *rows, const int32_t *starts, int64_t b, int64_t t, int64_t h, int64_t hkv, int64_t d,
                        int64_t capacity, int64_t window, int bf16);

// What the bf16 attention runs: cuDNN's fused flash attention (libnanochat_cudnn.so, loaded beside this library when
// cuDNN is there) or the WMMA kernels above, with the reason. nc_attention_select(ctx, 0) takes the WMMA kernels,
// (ctx, 1) cuDNN again (an error when it did not load): the op check runs both.
int nc_attention_backend(nc_context *ctx, char *name, int name_len);
int nc_attention_select(nc_context *ctx, int cudnn);

// --- the GPT's gates (gates.cu); gradients are added into their outputs (zero them for a fresh gradient)
// embedding: out[i] = table[ids[i]] ([n, c]); backward scatter-adds into dtable (atomics: the summation order of
// repeated ids is not fixed)
int nc_embedding_forward(nc_context *ctx, float *out, const float *table, const int32_t *ids, int64_t n, int64_t c);
int nc_embedding_backward(nc_context *ctx, float *dtable, const float *dout, const int32_t *ids, int64_t n, int64_t c);
// smear over x [b, t, c] with a k-channel gate [k] and lambda [1]; gates [b*t] saved for the backward
int nc_smear_forward(nc_context *ctx, float *out, float *gates, const float *x, const float *gate, const float *lambda,
                     int64_t b, int64_t t, int64_t c, int k);
int nc_smear_backward(nc_context *ctx, float *dx, float *dgate, float *dlambda, const float *dout, const float *x,
                      const float *gates, const float *gate, const float *lambda, int64_t b, int64_t t, int64_t c, int k);
// value embedding: v, ve, out [n, hkv*d]; u [n, c] (its first k channels feed the gate [hkv, k]); sig [n*hkv]; out may
// be v itself (each element is read, then written, by the same thread). v_bf16: v and out hold bf16; u_bf16: u does.
int nc_value_embedding_forward(nc_context *ctx, void *out, float *sig, const void *v, int v_bf16, const float *ve, const void *u,
                               int u_bf16, const float *gate, int64_t n, int64_t hkv, int64_t d, int64_t c, int k);
// dout_bf16: dout holds bf16 (attention's gradient of v).
int nc_value_embedding_backward(nc_context *ctx, float *dv, float *dve, float *du, float *dgate, const void *dout, int dout_bf16,
                                const float *ve, const void *u, int u_bf16, const float *gate, const float *sig, int64_t n,
                                int64_t hkv, int64_t d, int64_t c, int k);
// out = alpha[ia] a + beta[ib] b (the residual/x0 lambdas); any gradient pointer may be null. da and db are added to
// (accumulate_a / accumulate_b != 0) or written (0: a fresh gradient, no zero-fill first); dalpha, dbeta are added to.
int nc_scalar_mix_forward(nc_context *ctx, float *out, const float *a, const float *b, const float *alpha, int64_t ia,
                          const float *beta, int64_t ib, int64_t n);
int nc_scalar_mix_backward(nc_context *ctx, float *da, float *db, float *dalpha, float *dbeta, const float *g,
                           const float *a, const float *b, const float *alpha, int64_t ia, const float *beta, int64_t ib,
                           int64_t n, int accumulate_a, int accumulate_b);

// backout: out = x - lambda[0] * saved; backward: dsaved += -lambda g, dlambda += -(g . saved) (dx is g itself)
int nc_backout_forward(nc_context *ctx, float *out, const float *x, const float *saved, const float *lambda, int64_t n);
int nc_backout_backward(nc_context *ctx, float *dsaved, float *dlambda, const float *g, const float *saved,
                        const float *lambda, int64_t n);

// --- element-wise (elementwise.cu)
int nc_relu2_forward(nc_context *ctx, float *y, const float *x, int64_t n);
int nc_relu2_backward(nc_context *ctx, float *dx, const float *dy, const float *x, int64_t n, int accumulate);
// The same over bf16 values (the bf16 MLP keeps h = x W_fc^T in bf16): y = relu(x)^2 and dx = 2 relu(x) dy, the math in
// fp32 and each result rounded to bf16 once; dx may be dy itself (the gradient written over it).
int nc_relu2_forward_bf16(nc_context *ctx, void *y, const void *x, int64_t n);
int nc_relu2_backward_bf16(nc_context *ctx, void *dx, const void *dy, const void *x, int64_t n);
// The backward from the forward's output y = relu(x)^2 instead of x: dx = 2 sqrt(y) dy (relu(x) = sqrt(y)), bf16, fp32
// math; dx may be dy itself. The bf16 MLP keeps relu(h)^2, which c_proj's weight gradient reads, instead of h.
int nc_relu2_backward_from_output_bf16(nc_context *ctx, void *dx, const void *dy, const void *y, int64_t n);
// y = a * (scale ? scale[0] : 1) * x + b * y: sums, scalings and gradient accumulation. With b == 0, y is only
// written (its old contents may be anything); `scale` is a device scalar (a loss's incoming gradient) or null.
int nc_axpby(nc_context *ctx, float *y, const float *x, float a, const float *scale, float b, int64_t n);
// x = cap * tanh(x / cap), in place (the logits for sampling and scoring)
int nc_softcap(nc_context *ctx, float *x, int64_t n, float cap);
// out[0] = (accumulate ? out[0] : 0) + sum_i x[i] * (w ? w[i] : 1), summed in double (a loss from per-row losses)
int nc_dot(nc_context *ctx, float *out, const float *x, const float *w, int64_t n, int accumulate);

// --- softcap + cross-entropy, fused (classifier.cu). logits [rows, ld] (the first `vocab` columns are real),
// targets [rows] (-1 = ignored). Writes each row's loss (0 when ignored) and, when grad_scale != 0, overwrites the
// logits with d(loss)/d(logits) * grad_scale * (weights ? weights[row] : 1) (padding columns 0): the logits are
// never kept. The weights are RL's per-token advantages; null for a plain mean.
int nc_softcap_cross_entropy(nc_context *ctx, float *logits, float *losses, const int32_t *targets, const float *weights,
                             int64_t rows, int64_t vocab, int64_t ld, float softcap, float grad_scale);
// the same over bf16 logits (nc_matmul_bf16_out's), the math in fp32 and the gradient written back in bf16 (half the
// bytes of every pass over the largest activation of the step)
int nc_softcap_cross_entropy_bf16(nc_context *ctx, void *logits, float *losses, const int32_t *targets, const float *weights,
                                  int64_t rows, int64_t vocab, int64_t ld, float softcap, float grad_scale);

// --- AdamW, upstream's form (adamw.cu): p *= 1 - lr*wd; m += (1-b1)(g-m); v += (1-b2)(g^2-v);
// p -= lr/(1-b1^step) * m / (sqrt(v/(1-b2^step)) + eps)
int nc_adamw_step(nc_context *ctx, float *p, const float *g, float *m, float *v, int64_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int step);

// --- Muon on a stack of K same-shape matrices [K, rows, cols] (muon.cu), upstream's step: Nesterov momentum,
// MuonEq row equilibration, normalisation, `ns_steps` Polar Express iterations (products in bf16 when bf16 != 0,
// else exact fp32), Muon+ renormalisation, NorMuon variance reduction (second: [K, rows] when rows >= cols, else
// [K, cols]), cautious weight decay with lr * sqrt(max(1, rows/cols)). A null grads pointer means zero gradients.
int nc_muon_step(nc_context *ctx, float *params, const float *grads, float *momentum, float *second, int64_t K,
                 int64_t rows, int64_t cols, float lr, float weight_decay, float mu, float beta2, int ns_steps, int bf16);

// --- collectives between GPUs (nccl.cu): NCCL loaded with dlopen on first use (libnccl.so.2; $NANOCHAT_NCCL_LIB
// overrides), one communicator per context, float32, reductions averaged over the ranks (ncclAvg). Each collective
// runs on the context's collectives stream once the compute stream has run what was queued before the call;
// nc_nccl_wait makes the compute stream wait for every collective started so far. None blocks the host.
int nc_nccl_version(nc_context *ctx, int *version);
// rank 0 makes the job's id (128 bytes) and hands it to the others (over MPI, or torchrun's rendezvous)
int nc_nccl_unique_id(nc_context *ctx, char *id, int id_len);
int nc_nccl_init(nc_context *ctx, const char *id, int nranks, int rank);
int nc_nccl_all_reduce(nc_context *ctx, float *buf, int64_t count);  // in place
// send: nranks blocks of count_per_rank; recv: this rank's block, averaged
int nc_nccl_reduce_scatter(nc_context *ctx, const float *send, float *recv, int64_t count_per_rank);
// every rank's send averaged into root's recv
int nc_nccl_reduce(nc_context *ctx, const float *send, float *recv, int64_t count, int root);
// in place: buf holds nranks blocks of count_per_rank, this rank's at its own offset
int nc_nccl_all_gather(nc_context *ctx, float *buf, int64_t count_per_rank);
int nc_nccl_wait(nc_context *ctx);
// Safe from another thread (a watchdog): *failed = 1, the reason in `reason`, when NCCL's asynchronous error query
// reports a broken communicator (a peer died, a network error) or when collectives that the compute stream was made
// to wait for (nc_nccl_wait) have not finished within timeout_seconds (a peer stopped; 0: no limit). Then
// nc_nccl_abort ends this rank's collectives so that it can stop instead of hanging.
int nc_nccl_check(nc_context *ctx, double timeout_seconds, int *failed, char *reason, int reason_len);
int nc_nccl_abort(nc_context *ctx);

#ifdef __cplusplus
}
#endif
