// The GPT's small fused pieces, forward and backward, in fp32: token embedding gather/scatter, the smear gate,
// the value-embedding gate, the per-layer residual/x0 mix and backout. Scalar gradients (lambdas, gate weights)
// are reduced per block and added with one atomic per block and value.
#include "common.cuh"

__device__ __forceinline__ float sigmoidf(float x) { return 1.f / (1.f + __expf(-x)); }

// --- embedding: out[i, :] = table[ids[i], :]
__global__ void embedding_forward_kernel(float *out, const float *table, const int32_t *ids, int64_t n, int64_t c) {
    int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (e < n * c) out[e] = table[(int64_t)ids[e / c] * c + e % c];
}

__global__ void embedding_backward_kernel(float *dtable, const float *dout, const int32_t *ids, int64_t n, int64_t c) {
    int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (e < n * c) atomicAdd(&dtable[(int64_t)ids[e / c] * c + e % c], dout[e]);
}

int nc_embedding_forward(nc_context *ctx, float *out, const float *table, const int32_t *ids, int64_t n, int64_t c) {
    embedding_forward_kernel<<<nc_blocks(n * c, 256), 256, 0, ctx->stream>>>(out, table, ids, n, c);
    NC_LAUNCHED(ctx, "embedding_forward");
    return 0;
}

int nc_embedding_backward(nc_context *ctx, float *dtable, const float *dout, const int32_t *ids, int64_t n, int64_t c) {
    embedding_backward_kernel<<<nc_blocks(n * c, 256), 256, 0, ctx->stream>>>(dtable, dout, ids, n, c);
    NC_LAUNCHED(ctx, "embedding_backward");
    return 0;
}

// --- smear: out[t] = x[t] + lambda * sigmoid(gate . x[t, :k]) * x[t-1] for t >= 1; one block per (b, t)
__global__ void smear_forward_kernel(float *out, float *gates, const float *x, const float *gate, const float *lambda,
                                     int64_t t, int64_t c, int k) {
    __shared__ float s32[32];
    int64_t row = blockIdx.x, ti = row % t;
    const float *cur = x + row * c;
    float *dst = out + row * c;
    if (ti == 0) {
        for (int64_t j = threadIdx.x; j < c; j += blockDim.x) dst[j] = cur[j];
        if (threadIdx.x == 0) gates[row] = 0.f;
        return;
    }
    float a = threadIdx.x < k ? gate[threadIdx.x] * cur[threadIdx.x] : 0.f;
    float s = sigmoidf(block_sum(a, s32)), f = lambda[0] * s;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) dst[j] = cur[j] + f * cur[j - c];
    if (threadIdx.x == 0) gates[row] = s;
}

// dx[t] += dout[t] (+ the gate's share on the first k channels); dx[t-1] += lambda s dout[t];
// dlambda += s (dout[t] . x[t-1]); dgate += da x[t, :k] with da = lambda (dout[t] . x[t-1]) s (1 - s)
__global__ void smear_backward_kernel(float *dx, float *dgate, float *dlambda, const float *dout, const float *x,
                                      const float *gates, const float *gate, const float *lambda, int64_t t, int64_t c,
                                      int k) {
    __shared__ float s32[32];
    int64_t row = blockIdx.x, ti = row % t;
    const float *go = dout + row * c;
    float *d = dx + row * c;
    // this row's own gradient: dout[t] plus the next position's smear into it
    float sNext = ti + 1 < t ? gates[row + 1] : 0.f, lam = lambda[0];
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) d[j] += go[j] + (ti + 1 < t ? lam * sNext * go[j + c] : 0.f);
    if (ti == 0) return;
    const float *prev = x + (row - 1) * c, *cur = x + row * c;
    float gp = 0.f;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) gp += go[j] * prev[j];
    gp = block_sum(gp, s32);
    float s = gates[row], da = lam * gp * s * (1.f - s);
    if (threadIdx.x == 0) atomicAdd(dlambda, s * gp);
    if (threadIdx.x < k) {
        atomicAdd(&dgate[threadIdx.x], da * cur[threadIdx.x]);
        d[threadIdx.x] += da * gate[threadIdx.x];
    }
}

int nc_smear_forward(nc_context *ctx, float *out, float *gates, const float *x, const float *gate, const float *lambda,
                     int64_t b, int64_t t, int64_t c, int k) {
    if (k > 128 || k > c) return nc_fail(ctx, "nc_smear_forward", "the gate reads more channels than a block holds");
    smear_forward_kernel<<<(unsigned)(b * t), 128, 0, ctx->stream>>>(out, gates, x, gate, lambda, t, c, k);
    NC_LAUNCHED(ctx, "smear_forward");
    return 0;
}

int nc_smear_backward(nc_context *ctx, float *dx, float *dgate, float *dlambda, const float *dout, const float *x,
                      const float *gates, const float *gate, const float *lambda, int64_t b, int64_t t, int64_t c, int k) {
    if (k > 128 || k > c) return nc_fail(ctx, "nc_smear_backward", "the gate reads more channels than a block holds");
    smear_backward_kernel<<<(unsigned)(b * t), 128, 0, ctx->stream>>>(dx, dgate, dlambda, dout, x, gates, gate, lambda,
                                                                     t, c, k);
    NC_LAUNCHED(ctx, "smear_backward");
    return 0;
}

// --- value-embedding gate: out[n, h, :] = v[n, h, :] + 3 sigmoid(gate[h] . u[n, :k]) ve[n, h, :]; one warp per (n, h).
// V (v and out) and U (u) are fp32 or bf16 (the bf16 path's v and normed input): the math in fp32.
template <typename V, typename U>
__global__ void ve_mix_forward_kernel(V *out, float *sig, const V *v, const float *ve, const U *u,
                                      const float *gate, int64_t rows, int hkv, int64_t d, int64_t c, int k) {
    int64_t r = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;  // (n, h)
    if (r >= rows) return;
    int lane = threadIdx.x & 31;
    int64_t n = r / hkv, h = r % hkv;
    float a = lane < k ? gate[h * k + lane] * nc_load(u, n * c + lane) : 0.f;
    float s = sigmoidf(warp_sum(a)), g = 3.f * s;
    for (int64_t j = lane; j < d; j += 32) nc_store(out, r * d + j, nc_load(v, r * d + j) + g * ve[r * d + j]);
    if (lane == 0) sig[r] = s;
}

template <typename U, typename G>
__global__ void ve_mix_backward_kernel(float *dv, float *dve, float *du, float *dgate, const G *dout,
                                       const float *ve, const U *u, const float *gate, const float *sig,
                                       int64_t rows, int hkv, int64_t d, int64_t c, int k) {
    int64_t r = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
    if (r >= rows) return;
    int lane = threadIdx.x & 31;
    int64_t n = r / hkv, h = r % hkv;
    float s = sig[r], dot = 0.f;
    for (int64_t j = lane; j < d; j += 32) {
        float go = nc_load(dout, r * d + j);
        if (dv) dv[r * d + j] += go;
        if (dve) dve[r * d + j] += 3.f * s * go;
        dot += go * ve[r * d + j];
    }
    float da = warp_sum(dot) * 3.f * s * (1.f - s);
    if (lane < k) {
        if (dgate) atomicAdd(&dgate[h * k + lane], da * nc_load(u, n * c + lane));
        if (du) atomicAdd(&du[n * c + lane], da * gate[h * k + lane]);  // the KV heads of a row share u
    }
}

int nc_value_embedding_forward(nc_context *ctx, void *out, float *sig, const void *v, int v_bf16, const float *ve, const void *u,
                               int u_bf16, const float *gate, int64_t n, int64_t hkv, int64_t d, int64_t c, int k) {
    if (k > 32 || k > c) return nc_fail(ctx, "nc_value_embedding_forward", "the gate reads more than 32 channels");
    int64_t rows = n * hkv;
    if (rows == 0) return 0;
    typedef __nv_bfloat16 bf16;
    unsigned blocks = nc_blocks(rows, 8);
    if (v_bf16 && u_bf16)
        ve_mix_forward_kernel<<<blocks, 256, 0, ctx->stream>>>((bf16 *)out, sig, (const bf16 *)v, ve, (const bf16 *)u, gate, rows, (int)hkv, d, c, k);
    else if (v_bf16)
        ve_mix_forward_kernel<<<blocks, 256, 0, ctx->stream>>>((bf16 *)out, sig, (const bf16 *)v, ve, (const float *)u, gate, rows, (int)hkv, d, c, k);
    else if (u_bf16)
        ve_mix_forward_kernel<<<blocks, 256, 0, ctx->stream>>>((float *)out, sig, (const float *)v, ve, (const bf16 *)u, gate, rows, (int)hkv, d, c, k);
    else
        ve_mix_forward_kernel<<<blocks, 256, 0, ctx->stream>>>((float *)out, sig, (const float *)v, ve, (const float *)u, gate, rows, (int)hkv, d, c, k);
    NC_LAUNCHED(ctx, "value_embedding_forward");
    return 0;
}

int nc_value_embedding_backward(nc_context *ctx, float *dv, float *dve, float *du, float *dgate, const void *dout, int dout_bf16,
                                const float *ve, const void *u, int u_bf16, const float *gate, const float *sig, int64_t n,
                                int64_t hkv, int64_t d, int64_t c, int k) {
    if (k > 32 || k > c) return nc_fail(ctx, "nc_value_embedding_backward", "the gate reads more than 32 channels");
    int64_t rows = n * hkv;
    if (rows == 0) return 0;
    typedef __nv_bfloat16 bf16;
    unsigned blocks = nc_blocks(rows, 8);
    if (u_bf16 && dout_bf16)
        ve_mix_backward_kernel<<<blocks, 256, 0, ctx->stream>>>(dv, dve, du, dgate, (const bf16 *)dout, ve, (const bf16 *)u, gate, sig, rows,
                                                                (int)hkv, d, c, k);
    else if (u_bf16)
        ve_mix_backward_kernel<<<blocks, 256, 0, ctx->stream>>>(dv, dve, du, dgate, (const float *)dout, ve, (const bf16 *)u, gate, sig, rows,
                                                                (int)hkv, d, c, k);
    else if (dout_bf16)
        ve_mix_backward_kernel<<<blocks, 256, 0, ctx->stream>>>(dv, dve, du, dgate, (const bf16 *)dout, ve, (const float *)u, gate, sig, rows,
                                                                (int)hkv, d, c, k);
    else
        ve_mix_backward_kernel<<<blocks, 256, 0, ctx->stream>>>(dv, dve, du, dgate, (const float *)dout, ve, (const float *)u, gate, sig,
                                                                rows, (int)hkv, d, c, k);
    NC_LAUNCHED(ctx, "value_embedding_backward");
    return 0;
}

// --- out = alpha[ia] a + beta[ib] b (the per-layer residual / x0 mix); the scalars stay on the device
__global__ void scalar_mix_forward_kernel(float *out, const float *a, const float *b, const float *alpha,
                                          const float *beta, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = alpha[0] * a[i] + beta[0] * b[i];
}

// da (+)= alpha g; db (+)= beta g; dalpha += g . a; dbeta += g . b (da and db may be one buffer: each thread writes da
// before it reads db)
__global__ void scalar_mix_backward_kernel(float *da, float *db, float *dalpha, float *dbeta, const float *g,
                                           const float *a, const float *b, const float *alpha, const float *beta,
                                           int64_t n, int accumulate_a, int accumulate_b) {
    __shared__ float s32[32];
    float sa = alpha[0], sb = beta[0], pa = 0.f, pb = 0.f;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float gi = g[i];
        if (da) da[i] = accumulate_a ? da[i] + sa * gi : sa * gi;
        if (db) db[i] = accumulate_b ? db[i] + sb * gi : sb * gi;
        pa += gi * a[i];
        pb += gi * b[i];
    }
    pa = block_sum(pa, s32);
    pb = block_sum(pb, s32);
    if (threadIdx.x == 0) {
        if (dalpha) atomicAdd(dalpha, pa);
        if (dbeta) atomicAdd(dbeta, pb);
    }
}

int nc_scalar_mix_forward(nc_context *ctx, float *out, const float *a, const float *b, const float *alpha, int64_t ia,
                          const float *beta, int64_t ib, int64_t n) {
    scalar_mix_forward_kernel<<<nc_blocks(n, 256), 256, 0, ctx->stream>>>(out, a, b, alpha + ia, beta + ib, n);
    NC_LAUNCHED(ctx, "scalar_mix_forward");
    return 0;
}

int nc_scalar_mix_backward(nc_context *ctx, float *da, float *db, float *dalpha, float *dbeta, const float *g,
                           const float *a, const float *b, const float *alpha, int64_t ia, const float *beta, int64_t ib,
                           int64_t n, int accumulate_a, int accumulate_b) {
    unsigned blocks = nc_blocks(n, 256) < 1024 ? nc_blocks(n, 256) : 1024;
    scalar_mix_backward_kernel<<<blocks, 256, 0, ctx->stream>>>(da, db, dalpha ? dalpha + ia : nullptr,
                                                               dbeta ? dbeta + ib : nullptr, g, a, b, alpha + ia,
                                                               beta + ib, n, accumulate_a, accumulate_b);
    NC_LAUNCHED(ctx, "scalar_mix_backward");
    return 0;
}

// --- backout: out = x - lambda saved (the mid-layer residual taken out before the final norm)
__global__ void backout_forward_kernel(float *out, const float *x, const float *saved, const float *lambda, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = x[i] - lambda[0] * saved[i];
}

__global__ void backout_backward_kernel(float *dsaved, float *dlambda, const float *g, const float *saved,
                                        const float *lambda, int64_t n) {
    __shared__ float s32[32];
    float lam = lambda[0], p = 0.f;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float gi = g[i];
        if (dsaved) dsaved[i] -= lam * gi;
        p += gi * saved[i];
    }
    p = block_sum(p, s32);
    if (threadIdx.x == 0 && dlambda) atomicAdd(dlambda, -p);
}

int nc_backout_forward(nc_context *ctx, float *out, const float *x, const float *saved, const float *lambda, int64_t n) {
    backout_forward_kernel<<<nc_blocks(n, 256), 256, 0, ctx->stream>>>(out, x, saved, lambda, n);
    NC_LAUNCHED(ctx, "backout_forward");
    return 0;
}

int nc_backout_backward(nc_context *ctx, float *dsaved, float *dlambda, const float *g, const float *saved,
                        const float *lambda, int64_t n) {
    unsigned blocks = nc_blocks(n, 256) < 1024 ? nc_blocks(n, 256) : 1024;
    backout_backward_kernel<<<blocks, 256, 0, ctx->stream>>>(dsaved, dlambda, g, saved, lambda, n);
    NC_LAUNCHED(ctx, "backout_backward");
    return 0;
}
