// Causal self-attention with a sliding window and grouped KV heads, in fp32, forward and backward, FlashAttention
// style: scores never reach device memory, and only the key blocks a query's window can see are visited (the
// window skips work instead of masking it, as upstream's SDPA fallback does). q: [B, T, H, D]; k, v: [B, T, Hkv, D];
// query i attends keys j with i - window <= j <= i. The forward saves the log-sum-exp per (b, h, i); the backward
// recomputes the probabilities from it. This is the exact fp32 path (fixtures, op checks); the bf16 tensor-core
// path will share its interface.
#include "common.cuh"

constexpr int FWD_QUERIES = 64;  // queries per block, one per thread
constexpr int FWD_KEYS = 32;     // keys per shared-memory tile
constexpr int BWD_KEYS = 32;     // keys per block in the backward, each split over 4 threads
constexpr int BWD_QUERIES = 16;  // queries per shared-memory tile in the backward

template <int D>
__global__ void attention_forward_kernel(float *o, float *lse, const float *q, const float *k, const float *v, int T,
                                         int H, int Hkv, int window, float scale) {
    __shared__ float ks[FWD_KEYS][D], vs[FWD_KEYS][D];
    const int bh = blockIdx.y, b = bh / H, h = bh % H, kh = h / (H / Hkv);
    const int q0 = blockIdx.x * FWD_QUERIES, i = q0 + threadIdx.x;
    const bool active = i < T;
    float qr[D], acc[D];
    const float *qp = q + ((int64_t)(b * T + (active ? i : 0)) * H + h) * D;
    for (int d = 0; d < D; d++) { qr[d] = qp[d] * scale; acc[d] = 0.f; }
    float m = -INFINITY, l = 0.f;
    const int lo = max(0, q0 - window), hi = min(T - 1, q0 + FWD_QUERIES - 1);
    for (int k0 = lo; k0 <= hi; k0 += FWD_KEYS) {
        __syncthreads();
        for (int e = threadIdx.x; e < FWD_KEYS * D; e += blockDim.x) {
            int jj = e / D, d = e % D, j = k0 + jj;
            int64_t off = ((int64_t)(b * T + j) * Hkv + kh) * D + d;
            ks[jj][d] = j < T ? k[off] : 0.f;
            vs[jj][d] = j < T ? v[off] : 0.f;
        }
        __syncthreads();
        if (!active) continue;
        for (int jj = 0; jj < FWD_KEYS; jj++) {
            int j = k0 + jj;
            if (j > i || j < i - window) continue;
            float s = 0.f;
#pragma unroll
            for (int d = 0; d < D; d++) s += qr[d] * ks[jj][d];
            float mn = fmaxf(m, s), corr = __expf(m - mn), p = __expf(s - mn);
            l = l * corr + p;
#pragma unroll
            for (int d = 0; d < D; d++) acc[d] = acc[d] * corr + p * vs[jj][d];
            m = mn;
        }
    }
    if (!active) return;
    float *op = o + ((int64_t)(b * T + i) * H + h) * D;
    for (int d = 0; d < D; d++) op[d] = acc[d] / l;
    lse[(int64_t)bh * T + i] = m + logf(l);
}

// delta[b, h, i] = dO[i] . O[i] (the softmax backward's row term), one warp per (b, t, h) row
template <int D>
__global__ void attention_row_dot_kernel(float *delta, const float *o, const float *dout, int64_t rows, int T, int H) {
    int64_t r = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;  // row (b, t, h)
    if (r >= rows) return;
    int lane = threadIdx.x & 31;
    float s = 0.f;
    for (int d = lane; d < D; d += 32) s += o[r * D + d] * dout[r * D + d];
    s = warp_sum(s);
    if (lane == 0) {
        int64_t h = r % H, bt = r / H, t = bt % T, b = bt / T;
        delta[(b * H + h) * T + t] = s;
    }
}

int nc_attention_delta(nc_context *ctx, float *delta, const float *o, const float *dout, int64_t B, int64_t T, int64_t H,
                       int64_t D) {
    int64_t rows = B * T * H;
    if (D == 32) attention_row_dot_kernel<32><<<nc_blocks(rows, 8), 256, 0, ctx->stream>>>(delta, o, dout, rows, (int)T, (int)H);
    else if (D == 64) attention_row_dot_kernel<64><<<nc_blocks(rows, 8), 256, 0, ctx->stream>>>(delta, o, dout, rows, (int)T, (int)H);
    else if (D == 128) attention_row_dot_kernel<128><<<nc_blocks(rows, 8), 256, 0, ctx->stream>>>(delta, o, dout, rows, (int)T, (int)H);
    else return nc_fail(ctx, "attention", "head dimension must be 32, 64 or 128");
    NC_LAUNCHED(ctx, "attention_row_dot");
    return 0;
}

// One block per (key tile, b, kv head): 4 threads per key, each holding a quarter of the head dimension of that
// key's dK and dV; queries stream through shared memory. dQ sums over key tiles: accumulated per query tile in
// shared memory, then added to global memory once.
template <int D>
__global__ void attention_backward_kernel(float *dq, float *dk, float *dv, const float *q, const float *k,
                                          const float *v, const float *dout, const float *lse, const float *delta,
                                          int T, int H, int Hkv, int window, float scale) {
    constexpr int S = D / 4;  // dims per thread
    __shared__ float qs[BWD_QUERIES][D], dos[BWD_QUERIES][D], dqs[BWD_QUERIES][D];
    __shared__ float lses[BWD_QUERIES], deltas[BWD_QUERIES];
    const int b = blockIdx.y / Hkv, kh = blockIdx.y % Hkv, group = H / Hkv;
    const int k0 = blockIdx.x * BWD_KEYS, jj = threadIdx.x / 4, part = threadIdx.x % 4, j = k0 + jj;
    const bool active = j < T;
    float kr[S], vr[S], dkr[S], dvr[S];
    const int64_t koff = ((int64_t)(b * T + (active ? j : 0)) * Hkv + kh) * D + part * S;
    for (int d = 0; d < S; d++) { kr[d] = k[koff + d]; vr[d] = v[koff + d]; dkr[d] = 0.f; dvr[d] = 0.f; }
    const int kEnd = min(T, k0 + BWD_KEYS);
    const int qLo = k0, qHi = min(T - 1, kEnd - 1 + window);  // queries that see some key of this tile
    for (int hh = kh * group; hh < (kh + 1) * group; hh++) {
        for (int q0 = qLo; q0 <= qHi; q0 += BWD_QUERIES) {
            __syncthreads();
            for (int e = threadIdx.x; e < BWD_QUERIES * D; e += blockDim.x) {
                int ii = e / D, d = e % D, i = q0 + ii;
                int64_t off = ((int64_t)(b * T + i) * H + hh) * D + d;
                qs[ii][d] = i < T ? q[off] : 0.f;
                dos[ii][d] = i < T ? dout[off] : 0.f;
                dqs[ii][d] = 0.f;
            }
            if (threadIdx.x < BWD_QUERIES) {
                int i = q0 + threadIdx.x;
                lses[threadIdx.x] = i < T ? lse[((int64_t)b * H + hh) * T + i] : 0.f;
                deltas[threadIdx.x] = i < T ? delta[((int64_t)b * H + hh) * T + i] : 0.f;
            }
            __syncthreads();
            for (int ii = 0; ii < BWD_QUERIES; ii++) {
                int i = q0 + ii;
                // every thread takes part in the shuffles; the ones outside the window contribute zero
                bool valid = active && i < T && j <= i && j >= i - window;
                float s = 0.f, dp = 0.f;
#pragma unroll
                for (int d = 0; d < S; d++) {
                    s += qs[ii][part * S + d] * kr[d];
                    dp += dos[ii][part * S + d] * vr[d];
                }
                s += __shfl_xor_sync(0xffffffffu, s, 1);
                s += __shfl_xor_sync(0xffffffffu, s, 2);
                dp += __shfl_xor_sync(0xffffffffu, dp, 1);
                dp += __shfl_xor_sync(0xffffffffu, dp, 2);
                if (!valid) continue;
                float p = __expf(s * scale - lses[ii]);
                float ds = p * (dp - deltas[ii]) * scale;
#pragma unroll
                for (int d = 0; d < S; d++) {
                    dvr[d] += p * dos[ii][part * S + d];
                    dkr[d] += ds * qs[ii][part * S + d];
                    atomicAdd(&dqs[ii][part * S + d], ds * kr[d]);
                }
            }
            __syncthreads();
            for (int e = threadIdx.x; e < BWD_QUERIES * D; e += blockDim.x) {
                int ii = e / D, d = e % D, i = q0 + ii;
                if (i < T && dqs[ii][d] != 0.f) atomicAdd(&dq[((int64_t)(b * T + i) * H + hh) * D + d], dqs[ii][d]);
            }
        }
    }
    if (!active) return;
    for (int d = 0; d < S; d++) { dk[koff + d] += dkr[d]; dv[koff + d] += dvr[d]; }
}

template <int D>
static int attention_forward_d(nc_context *ctx, float *o, float *lse, const float *q, const float *k, const float *v,
                               int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t window) {
    dim3 grid((unsigned)((T + FWD_QUERIES - 1) / FWD_QUERIES), (unsigned)(B * H));
    attention_forward_kernel<D><<<grid, FWD_QUERIES, 0, ctx->stream>>>(o, lse, q, k, v, (int)T, (int)H, (int)Hkv,
                                                                       (int)window, 1.f / sqrtf((float)D));
    NC_LAUNCHED(ctx, "attention_forward");
    return 0;
}

template <int D>
static int attention_backward_d(nc_context *ctx, float *dq, float *dk, float *dv, float *delta, const float *q,
                                const float *k, const float *v, const float *o, const float *dout, const float *lse,
                                int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t window) {
    if (nc_attention_delta(ctx, delta, o, dout, B, T, H, D)) return 1;
    dim3 grid((unsigned)((T + BWD_KEYS - 1) / BWD_KEYS), (unsigned)(B * Hkv));
    attention_backward_kernel<D><<<grid, BWD_KEYS * 4, 0, ctx->stream>>>(dq, dk, dv, q, k, v, dout, lse, delta, (int)T,
                                                                         (int)H, (int)Hkv, (int)window,
                                                                         1.f / sqrtf((float)D));
    NC_LAUNCHED(ctx, "attention_backward");
    return 0;
}

static int check_shapes(nc_context *ctx, int64_t H, int64_t Hkv, int64_t D) {
    if (Hkv <= 0 || H % Hkv != 0) return nc_fail(ctx, "attention", "the query heads are not a multiple of the KV heads");
    if (D != 32 && D != 64 && D != 128) return nc_fail(ctx, "attention", "head dimension must be 32, 64 or 128");
    return 0;
}

int nc_attention_forward(nc_context *ctx, float *o, float *lse, const float *q, const float *k, const float *v,
                         int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D, int64_t window) {
    if (check_shapes(ctx, H, Hkv, D)) return 1;
    window = window < T ? window : T;
    if (D == 32) return attention_forward_d<32>(ctx, o, lse, q, k, v, B, T, H, Hkv, window);
    if (D == 64) return attention_forward_d<64>(ctx, o, lse, q, k, v, B, T, H, Hkv, window);
    return attention_forward_d<128>(ctx, o, lse, q, k, v, B, T, H, Hkv, window);
}

// Writing instead of adding (accumulate == 0): these kernels add with atomics, so the outputs are zeroed first.
int nc_attention_zero_grads(nc_context *ctx, float *dq, float *dk, float *dv, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                            int64_t D) {
    NC_CUDA(ctx, cudaMemsetAsync(dq, 0, (size_t)(B * T * H * D) * sizeof(float), ctx->stream));
    NC_CUDA(ctx, cudaMemsetAsync(dk, 0, (size_t)(B * T * Hkv * D) * sizeof(float), ctx->stream));
    NC_CUDA(ctx, cudaMemsetAsync(dv, 0, (size_t)(B * T * Hkv * D) * sizeof(float), ctx->stream));
    return 0;
}

int nc_attention_backward(nc_context *ctx, float *dq, float *dk, float *dv, float *delta, const float *q,
                          const float *k, const float *v, const float *o, const float *dout, const float *lse, int64_t B,
                          int64_t T, int64_t H, int64_t Hkv, int64_t D, int64_t window, int accumulate) {
    if (check_shapes(ctx, H, Hkv, D)) return 1;
    window = window < T ? window : T;
    if (!accumulate && nc_attention_zero_grads(ctx, dq, dk, dv, B, T, H, Hkv, D)) return 1;
    if (D == 32) return attention_backward_d<32>(ctx, dq, dk, dv, delta, q, k, v, o, dout, lse, B, T, H, Hkv, window);
    if (D == 64) return attention_backward_d<64>(ctx, dq, dk, dv, delta, q, k, v, o, dout, lse, B, T, H, Hkv, window);
    return attention_backward_d<128>(ctx, dq, dk, dv, delta, q, k, v, o, dout, lse, B, T, H, Hkv, window);
}
