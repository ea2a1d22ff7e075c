// Causal attention with a sliding window and GQA on the tensor cores (bf16 operands, fp32 accumulation and
// softmax), forward and backward: the training path (upstream runs its attention in bf16 too). When cuDNN's fused
// attention loaded (libnanochat_cudnn.so, context.cu), the same interface runs it instead, and these WMMA kernels are
// the fallback and the reference. Same interface and
// semantics as attention.cu, the exact fp32 kernels that check it: q, o [B, T, H, D], k, v [B, T, Hkv, D] (bf16 at the
// interface; the kernels load fp32 tiles and round them as they load, so the fallback widens the operands for them),
// query i sees keys i - window ..i, lse [B, H, T].
//
// FlashAttention-2's plan with WMMA 16x16x16 fragments: a block of 4 warps takes 64 queries (forward) or 64 keys
// (backward) of one (b, head) and streams the other side through shared memory in tiles of 64, visiting only the
// tiles the causal window reaches. Scores never reach device memory. The forward keeps the output rows in shared
// memory and rescales them as the running maximum moves; the backward keeps dK and dV in registers across the
// query tiles and adds dQ into device memory with atomics (one add per element per tile pair, as FA2 does).
#include <cuda_bf16.h>
#include <mma.h>

#include "common.cuh"

using namespace nvcuda;
typedef __nv_bfloat16 bf16;

constexpr int TILE = 64;      // queries and keys per tile
constexpr int WARPS = 4;      // 16 rows each
constexpr int THREADS = WARPS * 32;
// Shared-memory rows are padded (8 bf16 or 4 floats = 16 bytes) so that the 16 rows a fragment load reads, and
// the rows a warp's lanes walk, fall in different banks; fragment starts stay 32-byte aligned (16 padded rows).
constexpr int PAD_H = 8, PAD_F = 4;
constexpr int LDS = TILE + PAD_F;  // floats per row of a score tile
constexpr int LDP = TILE + PAD_H;  // bf16 per row of a probability tile

typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> Acc;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> ARow;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::col_major> ACol;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> BRow;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> BCol;

template <int D> struct ForwardShared {
    bf16 q[TILE][D + PAD_H], k[TILE][D + PAD_H], v[TILE][D + PAD_H], p[TILE][LDP];
    float s[TILE][LDS];
    float o[TILE][D + PAD_F];
    float tile[WARPS][256];
    float corr[TILE];
};

template <int D> struct BackwardShared {
    bf16 k[TILE][D + PAD_H], v[TILE][D + PAD_H], q[TILE][D + PAD_H], dout[TILE][D + PAD_H];
    bf16 pt[TILE][LDP], dst[TILE][LDP];  // P^T and dS^T: rows are keys, columns queries
    float s[TILE][LDS], dp[TILE][LDS];   // S^T and dP^T
    float lse[TILE], delta[TILE];
    float tile[WARPS][256];
};

// rows [row0, row0 + 64) of a [B, T, heads, D] tensor at head `head`, rounded to bf16; rows past T are zero
template <int D>
__device__ __forceinline__ void load_tile(bf16 (*dst)[D + PAD_H], const float *src, int b, int row0, int T, int heads, int head) {
    for (int e = threadIdx.x * 4; e < TILE * D; e += THREADS * 4) {
        int r = e / D, d = e % D, t = row0 + r;
        float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
        if (t < T) x = *reinterpret_cast<const float4 *>(src + ((int64_t)(b * T + t) * heads + head) * D + d);
        dst[r][d] = __float2bfloat16_rn(x.x);
        dst[r][d + 1] = __float2bfloat16_rn(x.y);
        dst[r][d + 2] = __float2bfloat16_rn(x.z);
        dst[r][d + 3] = __float2bfloat16_rn(x.w);
    }
}

template <int D>
__global__ void __launch_bounds__(THREADS) attention_forward_bf16_kernel(float *o, float *lse, const float *q,
                                                                        const float *k, const float *v, int T, int H,
                                                                        int Hkv, int window, float scale) {
    extern __shared__ __align__(128) unsigned char raw[];
    ForwardShared<D> &sm = *reinterpret_cast<ForwardShared<D> *>(raw);
    const int bh = blockIdx.y, b = bh / H, h = bh % H, kh = h / (H / Hkv);
    const int q0 = blockIdx.x * TILE, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    load_tile<D>(sm.q, q, b, q0, T, H, h);
    for (int e = threadIdx.x; e < TILE * (D + PAD_F); e += THREADS) (&sm.o[0][0])[e] = 0.f;
    // softmax state of the warp's 16 rows, held by every lane (row rr is query q0 + warp*16 + rr)
    float m[16], l[16];
#pragma unroll
    for (int rr = 0; rr < 16; rr++) { m[rr] = -INFINITY; l[rr] = 0.f; }
    const int lo = max(0, q0 - window) / TILE * TILE, hi = min(T - 1, q0 + TILE - 1);
    for (int k0 = lo; k0 <= hi; k0 += TILE) {
        __syncthreads();  // the previous key tile is consumed (and, the first time, q is loaded)
        load_tile<D>(sm.k, k, b, k0, T, Hkv, kh);
        load_tile<D>(sm.v, v, b, k0, T, Hkv, kh);
        __syncthreads();
        // S = Q K^T for this warp's 16 queries
#pragma unroll
        for (int ct = 0; ct < TILE / 16; ct++) {
            Acc acc;
            wmma::fill_fragment(acc, 0.f);
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                ARow a;
                BCol bt;
                wmma::load_matrix_sync(a, &sm.q[warp * 16][kk * 16], D + PAD_H);
                wmma::load_matrix_sync(bt, &sm.k[ct * 16][kk * 16], D + PAD_H);
                wmma::mma_sync(acc, a, bt, acc);
            }
            wmma::store_matrix_sync(&sm.s[warp * 16][ct * 16], acc, LDS, wmma::mem_row_major);
        }
        __syncwarp();
        // online softmax over this tile, one row at a time, each lane holding columns lane and lane + 32:
        // P = exp(S - m_new) (bf16 for the product), l and the output's rescale factor
#pragma unroll
        for (int rr = 0; rr < 16; rr++) {
            const int row = warp * 16 + rr, i = q0 + row;
            const int j0 = k0 + lane, j1 = j0 + 32;
            float s0 = i < T && j0 <= i && j0 >= i - window ? sm.s[row][lane] * scale : -INFINITY;
            float s1 = i < T && j1 <= i && j1 >= i - window ? sm.s[row][lane + 32] * scale : -INFINITY;
            const float mnew = fmaxf(m[rr], warp_max(fmaxf(s0, s1)));
            const bool empty = mnew == -INFINITY;  // nothing seen yet in this row
            const float corr = empty ? 1.f : __expf(m[rr] - mnew);
            const float p0 = empty ? 0.f : __expf(s0 - mnew), p1 = empty ? 0.f : __expf(s1 - mnew);
            l[rr] = l[rr] * corr + warp_sum(p0 + p1);
            m[rr] = mnew;
            sm.p[row][lane] = __float2bfloat16_rn(p0);
            sm.p[row][lane + 32] = __float2bfloat16_rn(p1);
            if (lane == 0) sm.corr[row] = corr;
        }
        __syncwarp();
        // O = O corr + P V, one 16x16 output tile at a time through the warp's scratch tile
#pragma unroll
        for (int ct = 0; ct < D / 16; ct++) {
            Acc acc;
            wmma::fill_fragment(acc, 0.f);
#pragma unroll
            for (int kk = 0; kk < TILE / 16; kk++) {
                ARow a;
                BRow bv;
                wmma::load_matrix_sync(a, &sm.p[warp * 16][kk * 16], LDP);
                wmma::load_matrix_sync(bv, &sm.v[kk * 16][ct * 16], D + PAD_H);
                wmma::mma_sync(acc, a, bv, acc);
            }
            wmma::store_matrix_sync(sm.tile[warp], acc, 16, wmma::mem_row_major);
            __syncwarp();
            for (int e = lane; e < 256; e += 32) {
                int r = warp * 16 + e / 16, c = ct * 16 + e % 16;
                sm.o[r][c] = sm.o[r][c] * sm.corr[r] + sm.tile[warp][e];
            }
            __syncwarp();
        }
    }
#pragma unroll
    for (int rr = 0; rr < 16; rr++) {
        const int row = warp * 16 + rr, i = q0 + row;
        if (i >= T) break;
        const float inv = 1.f / l[rr];
        float *orow = o + ((int64_t)(b * T + i) * H + h) * D;
        for (int d = lane; d < D; d += 32) orow[d] = sm.o[row][d] * inv;
        if (lane == 0) lse[(int64_t)bh * T + i] = m[rr] + logf(l[rr]);
    }
}

template <int D>
__global__ void __launch_bounds__(THREADS) attention_backward_bf16_kernel(float *dq, float *dk, float *dv,
                                                                         const float *q, const float *k, const float *v,
                                                                         const float *dout, const float *lse,
                                                                         const float *delta, int T, int H, int Hkv,
                                                                         int window, float scale) {
    extern __shared__ __align__(128) unsigned char raw[];
    BackwardShared<D> &sm = *reinterpret_cast<BackwardShared<D> *>(raw);
    const int bh = blockIdx.y, b = bh / H, h = bh % H, kh = h / (H / Hkv);
    const int k0 = blockIdx.x * TILE, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    load_tile<D>(sm.k, k, b, k0, T, Hkv, kh);
    load_tile<D>(sm.v, v, b, k0, T, Hkv, kh);
    Acc dkAcc[D / 16], dvAcc[D / 16];
#pragma unroll
    for (int ct = 0; ct < D / 16; ct++) {
        wmma::fill_fragment(dkAcc[ct], 0.f);
        wmma::fill_fragment(dvAcc[ct], 0.f);
    }
    const int qhi = min(T - 1, k0 + TILE - 1 + window);
    for (int q0 = k0; q0 <= qhi; q0 += TILE) {
        __syncthreads();  // the previous query tile (and dS^T) is consumed
        load_tile<D>(sm.q, q, b, q0, T, H, h);
        load_tile<D>(sm.dout, dout, b, q0, T, H, h);
        for (int c = threadIdx.x; c < TILE; c += THREADS) {
            int i = q0 + c;
            sm.lse[c] = i < T ? lse[(int64_t)bh * T + i] : INFINITY;
            sm.delta[c] = i < T ? delta[(int64_t)bh * T + i] : 0.f;
        }
        __syncthreads();
        // S^T = K Q^T and dP^T = V dO^T for this warp's 16 keys
#pragma unroll
        for (int ct = 0; ct < TILE / 16; ct++) {
            Acc s, dp;
            wmma::fill_fragment(s, 0.f);
            wmma::fill_fragment(dp, 0.f);
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                ARow a;
                BCol bt;
                wmma::load_matrix_sync(a, &sm.k[warp * 16][kk * 16], D + PAD_H);
                wmma::load_matrix_sync(bt, &sm.q[ct * 16][kk * 16], D + PAD_H);
                wmma::mma_sync(s, a, bt, s);
                wmma::load_matrix_sync(a, &sm.v[warp * 16][kk * 16], D + PAD_H);
                wmma::load_matrix_sync(bt, &sm.dout[ct * 16][kk * 16], D + PAD_H);
                wmma::mma_sync(dp, a, bt, dp);
            }
            wmma::store_matrix_sync(&sm.s[warp * 16][ct * 16], s, LDS, wmma::mem_row_major);
            wmma::store_matrix_sync(&sm.dp[warp * 16][ct * 16], dp, LDS, wmma::mem_row_major);
        }
        __syncwarp();
        // P^T = exp(S^T scale - lse) where the window lets query i see key j; dS^T = P^T (dP^T - delta); one key
        // row at a time, each lane holding queries lane and lane + 32
#pragma unroll 4
        for (int rr = 0; rr < 16; rr++) {
            const int krow = warp * 16 + rr, j = k0 + krow;
#pragma unroll
            for (int h2 = 0; h2 < 2; h2++) {
                const int col = lane + 32 * h2, i = q0 + col;
                const bool seen = i < T && j <= i && j >= i - window;
                const float p = seen ? __expf(sm.s[krow][col] * scale - sm.lse[col]) : 0.f;
                sm.pt[krow][col] = __float2bfloat16_rn(p);
                sm.dst[krow][col] = __float2bfloat16_rn(p * (sm.dp[krow][col] - sm.delta[col]));
            }
        }
        __syncwarp();
        // dV += P^T dO, dK += dS^T Q (scaled at the end)
#pragma unroll
        for (int ct = 0; ct < D / 16; ct++) {
#pragma unroll
            for (int kk = 0; kk < TILE / 16; kk++) {
                ARow a;
                BRow bq;
                wmma::load_matrix_sync(a, &sm.pt[warp * 16][kk * 16], LDP);
                wmma::load_matrix_sync(bq, &sm.dout[kk * 16][ct * 16], D + PAD_H);
                wmma::mma_sync(dvAcc[ct], a, bq, dvAcc[ct]);
                wmma::load_matrix_sync(a, &sm.dst[warp * 16][kk * 16], LDP);
                wmma::load_matrix_sync(bq, &sm.q[kk * 16][ct * 16], D + PAD_H);
                wmma::mma_sync(dkAcc[ct], a, bq, dkAcc[ct]);
            }
        }
        __syncthreads();  // every warp's dS^T rows are written
        // dQ += scale dS K for this warp's 16 queries: dS = (dS^T)^T is read column-major
        const int qrow0 = warp * 16;
#pragma unroll
        for (int ct = 0; ct < D / 16; ct++) {
            Acc acc;
            wmma::fill_fragment(acc, 0.f);
#pragma unroll
            for (int kk = 0; kk < TILE / 16; kk++) {
                ACol a;
                BRow bk;
                wmma::load_matrix_sync(a, &sm.dst[kk * 16][qrow0], LDP);
                wmma::load_matrix_sync(bk, &sm.k[kk * 16][ct * 16], D + PAD_H);
                wmma::mma_sync(acc, a, bk, acc);
            }
            wmma::store_matrix_sync(sm.tile[warp], acc, 16, wmma::mem_row_major);
            __syncwarp();
            for (int e = lane; e < 256; e += 32) {
                int i = q0 + qrow0 + e / 16, d = ct * 16 + e % 16;
                if (i < T) atomicAdd(&dq[((int64_t)(b * T + i) * H + h) * D + d], scale * sm.tile[warp][e]);
            }
            __syncwarp();
        }
    }
    // dK and dV of this warp's 16 keys; the query heads of a KV head share them, hence the atomics
#pragma unroll
    for (int ct = 0; ct < D / 16; ct++) {
        for (int which = 0; which < 2; which++) {
            wmma::store_matrix_sync(sm.tile[warp], which ? dvAcc[ct] : dkAcc[ct], 16, wmma::mem_row_major);
            __syncwarp();
            for (int e = lane; e < 256; e += 32) {
                int jj = k0 + warp * 16 + e / 16, d = ct * 16 + e % 16;
                if (jj < T) {
                    int64_t off = ((int64_t)(b * T + jj) * Hkv + kh) * D + d;
                    if (which) atomicAdd(&dv[off], sm.tile[warp][e]);
                    else atomicAdd(&dk[off], scale * sm.tile[warp][e]);
                }
            }
            __syncwarp();
        }
    }
}

static int check_bf16_shapes(nc_context *ctx, int64_t H, int64_t Hkv, int64_t D) {
    if (Hkv <= 0 || H % Hkv != 0) return nc_fail(ctx, "attention (bf16)", "the query heads are not a multiple of the KV heads");
    if (D != 64 && D != 128) return nc_fail(ctx, "attention (bf16)", "head dimension must be 64 or 128");
    return 0;
}

template <int D>
static int forward_d(nc_context *ctx, float *o, float *lse, const float *q, const float *k, const float *v, int64_t B,
                     int64_t T, int64_t H, int64_t Hkv, int64_t window) {
    size_t bytes = sizeof(ForwardShared<D>);
    NC_CUDA(ctx, cudaFuncSetAttribute(attention_forward_bf16_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    dim3 grid((unsigned)((T + TILE - 1) / TILE), (unsigned)(B * H));
    attention_forward_bf16_kernel<D><<<grid, THREADS, bytes, ctx->stream>>>(o, lse, q, k, v, (int)T, (int)H, (int)Hkv,
                                                                            (int)window, 1.f / sqrtf((float)D));
    NC_LAUNCHED(ctx, "attention_forward_bf16");
    return 0;
}

template <int D>
static int backward_d(nc_context *ctx, float *dq, float *dk, float *dv, float *delta, const float *q, const float *k,
                      const float *v, const float *o, const float *dout, const float *lse, int64_t B, int64_t T,
                      int64_t H, int64_t Hkv, int64_t window) {
    if (nc_attention_delta(ctx, delta, o, dout, B, T, H, D)) return 1;  // the fp32 path's kernel (attention.cu)
    size_t bytes = sizeof(BackwardShared<D>);
    NC_CUDA(ctx, cudaFuncSetAttribute(attention_backward_bf16_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    dim3 grid((unsigned)((T + TILE - 1) / TILE), (unsigned)(B * H));
    attention_backward_bf16_kernel<D><<<grid, THREADS, bytes, ctx->stream>>>(dq, dk, dv, q, k, v, dout, lse, delta, (int)T,
                                                                             (int)H, (int)Hkv, (int)window,
                                                                             1.f / sqrtf((float)D));
    NC_LAUNCHED(ctx, "attention_backward_bf16");
    return 0;
}

// --- cuDNN's fused attention (libnanochat_cudnn.so, when it loaded): the same interface, its operands in bf16
// out (+)= in: cuDNN's bf16 gradients written or added into ours, the WMMA fallback's operands widened
__global__ void from_bf16_kernel(float *out, const bf16 *in, int64_t n, int accumulate) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = accumulate ? out[i] + __bfloat162float(in[i]) : __bfloat162float(in[i]);
}

// scratch from the caching allocator (one block per size, reused every step); released at the end of the op
struct Scratch {
    nc_context *ctx;
    void *p[8] = {};
    int n = 0;
    explicit Scratch(nc_context *c) : ctx(c) {}
    ~Scratch() { for (int i = 0; i < n; i++) nc_free(ctx, p[i]); }
    template <typename T> T *take(int64_t count) {
        if (n == 8 || nc_malloc(ctx, &p[n], count * (int64_t)sizeof(T))) return nullptr;
        return (T *)p[n++];
    }
};

// x rounded to bf16 into the scratch (nc_to_bf16, matmul.cu's rounding)
static bf16 *rounded(nc_context *ctx, Scratch &scratch, const float *x, int64_t n) {
    bf16 *out = scratch.take<bf16>(n);
    return out && nc_to_bf16(ctx, out, x, n) == 0 ? out : nullptr;
}

// bf16 x widened to fp32 into the scratch (null x: room only)
static float *widened(nc_context *ctx, Scratch &scratch, const void *x, int64_t n) {
    float *out = scratch.take<float>(n);
    if (out && x) from_bf16_kernel<<<nc_blocks(n, 256), 256, 0, ctx->stream>>>(out, (const bf16 *)x, n, 0);
    return out;
}

// cuDNN reads and writes our bf16 operands in place; only the incoming gradient is rounded, and its bf16 gradients are
// widened into ours
static int cudnn_forward(nc_context *ctx, void *o, float *lse, const void *q, const void *k, const void *v, int64_t B,
                         int64_t T, int64_t H, int64_t Hkv, int64_t D, int64_t window) {
    if (ctx->cudnn->forward(ctx->cudnn->state, o, lse, q, k, v, B, T, H, Hkv, D, window))
        return nc_fail(ctx, "attention (cuDNN)", ctx->cudnn->error(ctx->cudnn->state));
    return 0;
}

// dout as the bf16 cuDNN reads: its own bits when it is bf16, else rounded into the scratch
static const void *bf16_dout(nc_context *ctx, Scratch &scratch, const void *dout, int dout_bf16, int64_t n) {
    return dout_bf16 ? dout : rounded(ctx, scratch, (const float *)dout, n);
}

static int cudnn_backward(nc_context *ctx, void *dq, void *dk, void *dv, int grads_bf16, const void *q, const void *k, const void *v,
                          const void *o, const void *dout, int dout_bf16, const float *lse, int64_t B, int64_t T, int64_t H,
                          int64_t Hkv, int64_t D, int64_t window, int accumulate) {
    Scratch scratch(ctx);
    int64_t nq = B * T * H * D, nk = B * T * Hkv * D;
    const void *dob = bf16_dout(ctx, scratch, dout, dout_bf16, nq);
    // bf16 gradients are cuDNN's own output; fp32 ones are widened (written or added) from a bf16 scratch
    bf16 *dqb = grads_bf16 ? (bf16 *)dq : scratch.take<bf16>(nq), *dkb = grads_bf16 ? (bf16 *)dk : scratch.take<bf16>(nk);
    bf16 *dvb = grads_bf16 ? (bf16 *)dv : scratch.take<bf16>(nk);
    if (!dob || !dqb || !dkb || !dvb) return nc_fail(ctx, "attention backward (cuDNN)", "no device memory for the bf16 gradients");
    if (ctx->cudnn->backward(ctx->cudnn->state, dqb, dkb, dvb, q, k, v, o, dob, lse, B, T, H, Hkv, D, window))
        return nc_fail(ctx, "attention backward (cuDNN)", ctx->cudnn->error(ctx->cudnn->state));
    if (grads_bf16) return 0;
    // cuDNN writes whole gradients: into fresh ones directly (no zero-fill, no read), or added to what is there
    from_bf16_kernel<<<nc_blocks(nq, 256), 256, 0, ctx->stream>>>((float *)dq, dqb, nq, accumulate);
    from_bf16_kernel<<<nc_blocks(nk, 256), 256, 0, ctx->stream>>>((float *)dk, dkb, nk, accumulate);
    from_bf16_kernel<<<nc_blocks(nk, 256), 256, 0, ctx->stream>>>((float *)dv, dvb, nk, accumulate);
    NC_LAUNCHED(ctx, "attention backward (cuDNN) gradients");
    return 0;
}

// The WMMA kernels load fp32 tiles (rounding them as they load, which leaves bf16 values as they are): the fallback
// widens the bf16 operands into fp32 scratch for them (o: room only when it is the output), and rounds its output back
struct Widened {
    float *q, *k, *v, *o;
};
static int widen_operands(nc_context *ctx, Scratch &scratch, Widened &w, const void *q, const void *k, const void *v, const void *o,
                          int64_t nq, int64_t nk, const char *what) {
    w = {widened(ctx, scratch, q, nq), widened(ctx, scratch, k, nk), widened(ctx, scratch, v, nk), widened(ctx, scratch, o, nq)};
    if (!w.q || !w.k || !w.v || !w.o) return nc_fail(ctx, what, "no device memory for the widened operands");
    NC_LAUNCHED(ctx, what);
    return 0;
}

static int wmma_forward(nc_context *ctx, void *o, float *lse, const void *q, const void *k, const void *v, int64_t B, int64_t T,
                        int64_t H, int64_t Hkv, int64_t D, int64_t window) {
    Scratch scratch(ctx);
    Widened w;
    if (widen_operands(ctx, scratch, w, q, k, v, nullptr, B * T * H * D, B * T * Hkv * D, "attention (WMMA) operands")) return 1;
    if ((D == 64 ? forward_d<64> : forward_d<128>)(ctx, w.o, lse, w.q, w.k, w.v, B, T, H, Hkv, window)) return 1;
    return nc_to_bf16(ctx, o, w.o, B * T * H * D);
}

static int wmma_backward(nc_context *ctx, void *dq, void *dk, void *dv, int grads_bf16, float *delta, const void *q, const void *k,
                         const void *v, const void *o, const void *dout, int dout_bf16, const float *lse, int64_t B, int64_t T, int64_t H,
                         int64_t Hkv, int64_t D, int64_t window, int accumulate) {
    Scratch scratch(ctx);
    Widened w;
    int64_t nq = B * T * H * D, nk = B * T * Hkv * D;
    if (widen_operands(ctx, scratch, w, q, k, v, o, nq, nk, "attention backward (WMMA) operands")) return 1;
    const float *doutf = dout_bf16 ? widened(ctx, scratch, dout, nq) : (const float *)dout;
    // the WMMA kernels add fp32 gradients with atomics: bf16 ones are made in fp32 scratch and rounded into place
    float *dqf = grads_bf16 ? scratch.take<float>(nq) : (float *)dq, *dkf = grads_bf16 ? scratch.take<float>(nk) : (float *)dk;
    float *dvf = grads_bf16 ? scratch.take<float>(nk) : (float *)dv;
    if (!doutf || !dqf || !dkf || !dvf) return nc_fail(ctx, "attention backward (WMMA)", "no device memory for the gradients");
    if (!accumulate && nc_attention_zero_grads(ctx, dqf, dkf, dvf, B, T, H, Hkv, D)) return 1;
    if ((D == 64 ? backward_d<64> : backward_d<128>)(ctx, dqf, dkf, dvf, delta, w.q, w.k, w.v, w.o, doutf, lse, B, T, H, Hkv, window))
        return 1;
    if (!grads_bf16) return 0;
    return nc_to_bf16(ctx, dq, dqf, nq) || nc_to_bf16(ctx, dk, dkf, nk) || nc_to_bf16(ctx, dv, dvf, nk);
}

// cuDNN failed on a call (the reason is in ctx->error): say so once, and run the WMMA kernels from then on
static void give_up_cudnn(nc_context *ctx) {
    fprintf(stderr, "nanochat: cuDNN attention failed (%s); the WMMA attention kernels take over\n", ctx->error);
    snprintf(ctx->attention_backend, sizeof ctx->attention_backend, "WMMA kernels (cuDNN failed: %.200s)", ctx->error);
    ctx->use_cudnn = 0;
    cudaGetLastError();  // clear a launch error the failed call may have left
}

int nc_attention_forward_bf16(nc_context *ctx, void *o, float *lse, const void *q, const void *k, const void *v,
                              int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D, int64_t window) {
    if (check_bf16_shapes(ctx, H, Hkv, D)) return 1;
    window = window < T ? window : T;
    if (ctx->cudnn && ctx->use_cudnn) {
        if (cudnn_forward(ctx, o, lse, q, k, v, B, T, H, Hkv, D, window) == 0) return 0;
        give_up_cudnn(ctx);  // a shape cuDNN refuses: the WMMA kernels from now on (same statistics, so they mix)
    }
    return wmma_forward(ctx, o, lse, q, k, v, B, T, H, Hkv, D, window);
}

int nc_attention_backward_bf16(nc_context *ctx, void *dq, void *dk, void *dv, int grads_bf16, float *delta, const void *q,
                               const void *k, const void *v, const void *o, const void *dout, int dout_bf16, const float *lse,
                               int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D, int64_t window, int accumulate) {
    if (check_bf16_shapes(ctx, H, Hkv, D)) return 1;
    if (grads_bf16 && accumulate) return nc_fail(ctx, "nc_attention_backward_bf16", "bf16 gradients are written, not added to");
    window = window < T ? window : T;
    if (ctx->cudnn && ctx->use_cudnn) {
        if (cudnn_backward(ctx, dq, dk, dv, grads_bf16, q, k, v, o, dout, dout_bf16, lse, B, T, H, Hkv, D, window, accumulate) == 0) return 0;
        give_up_cudnn(ctx);
    }
    return wmma_backward(ctx, dq, dk, dv, grads_bf16, delta, q, k, v, o, dout, dout_bf16, lse, B, T, H, Hkv, D, window, accumulate);
}
