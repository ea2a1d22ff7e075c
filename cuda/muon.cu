// Muon on the device, for a stack of K matrices of one shape (upstream stacks each shape group the same way):
// element-wise and per-row kernels around batched cuBLASLt products for the Polar Express iterations.
#include "common.cuh"

static const float polar_express[5][3] = {
    {8.156554524902461f, -22.48329292557795f, 15.878769915207462f},
    {4.042929935166739f, -2.808917465908714f, 0.5000178451051316f},
    {3.8916678022926607f, -2.772484153217685f, 0.5060648178503393f},
    {3.285753657755655f, -2.3681294933425376f, 0.46449024233003106f},
    {2.3465413258596377f, -1.7097828382687081f, 0.42323551169305323f},
};

// M += (1-mu)(G - M); U = G + mu (M - G)
__global__ void muon_momentum_kernel(float *u, float *m, const float *g, int64_t n, float mu) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gr = g ? g[i] : 0.f, mi = m[i] + (1.f - mu) * (gr - m[i]);
    m[i] = mi;
    u[i] = gr + mu * (mi - gr);
}

// norms[k] = ||X_k||_F, one block per matrix
__global__ void frobenius_kernel(float *norms, const float *x, int64_t size) {
    __shared__ float s32[32];
    const float *xk = x + blockIdx.x * size;
    float s = 0.f;
    for (int64_t i = threadIdx.x; i < size; i += blockDim.x) s += xk[i] * xk[i];
    s = block_sum(s, s32);
    if (threadIdx.x == 0) norms[blockIdx.x] = sqrtf(s);
}

// MuonEq: each row of matrix k rescaled to norms[k] / sqrt(rows); one block per (k, row)
__global__ void muon_eq_kernel(float *u, const float *norms, int64_t rows, int64_t cols) {
    __shared__ float s32[32];
    int64_t k = blockIdx.x / rows;
    float *row = u + blockIdx.x * cols;
    float s = 0.f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += row[j] * row[j];
    s = block_sum(s, s32);
    float f = norms[k] / sqrtf((float)rows) / fmaxf(sqrtf(s), 1e-6f);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) row[j] *= f;
}

// x_k *= numerator / max(norms[k] * mul + add, floor)
__global__ void scale_by_norm_kernel(float *x, const float *norms, int64_t size, int64_t n, float numerator, float mul,
                                     float add, float floor_) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) x[i] *= numerator / fmaxf(norms[i / size] * mul + add, floor_);
}

__global__ void axpy_kernel(float *y, const float *x, float a, int64_t n) {  // y += a x
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) y[i] += a * x[i];
}

// NorMuon statistics: st[k, i] = mean of X^2 over the row i (per_row) or the column i
__global__ void normuon_stats_kernel(float *st, const float *x, int64_t rows, int64_t cols, int per_row) {
    __shared__ float s32[32];
    int64_t m = per_row ? rows : cols, k = blockIdx.x / m, i = blockIdx.x % m;
    const float *xk = x + k * rows * cols;
    int64_t len = per_row ? cols : rows;
    float s = 0.f;
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) {
        float v = per_row ? xk[i * cols + j] : xk[j * cols + i];
        s += v * v;
    }
    s = block_sum(s, s32);
    if (threadIdx.x == 0) st[blockIdx.x] = s / (float)len;
}

// per matrix: S += (1-beta2)(v - S); step = 1/sqrt(max(S, 1e-10)); st becomes step * vnorm / max(vnorm_new, 1e-10)
__global__ void normuon_update_kernel(float *st, float *second, int64_t m, float n, float beta2) {
    __shared__ float s32[32];
    float *sk = st + blockIdx.x * m, *bk = second + blockIdx.x * m;
    float vn = 0.f, vnew = 0.f;
    for (int64_t i = threadIdx.x; i < m; i += blockDim.x) {
        float v = sk[i];
        vn += v * n;
        float s = bk[i] + (1.f - beta2) * (v - bk[i]);
        bk[i] = s;
        float step = 1.f / sqrtf(fmaxf(s, 1e-10f));
        vnew += v * n * step * step;
        sk[i] = step;
    }
    vn = block_sum(vn, s32);
    vnew = block_sum(vnew, s32);
    float ratio = sqrtf(vn) / fmaxf(sqrtf(vnew), 1e-10f);
    __syncthreads();
    for (int64_t i = threadIdx.x; i < m; i += blockDim.x) sk[i] *= ratio;
}

// X *= st (per row or column), then the cautious update: P -= lr X + lr wd P [X P >= 0]
__global__ void muon_update_kernel(float *p, const float *x, const float *st, int64_t rows, int64_t cols, int per_row,
                                   int64_t n, float lr, float wd) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    int64_t size = rows * cols, k = i / size, r = (i % size) / cols, c = i % cols;
    float u = x[i] * (per_row ? st[k * rows + r] : st[k * cols + c]), pi = p[i];
    float decay = u * pi >= 0.f ? lr * wd * pi : 0.f;
    p[i] = pi - (lr * u + decay);
}

int nc_muon_step(nc_context *ctx, float *params, const float *grads, float *momentum, float *second, int64_t K,
                 int64_t rows, int64_t cols, float lr, float weight_decay, float mu, float beta2, int ns_steps, int bf16) {
    const int64_t size = rows * cols, n = K * size, small = rows < cols ? rows : cols;
    const int per_row = rows >= cols;
    const int64_t m = per_row ? rows : cols;
    size_t need = (size_t)(2 * n + 2 * K * small * small + K + K * m) * sizeof(float);
    if (need > ctx->muon_scratch_bytes) {
        if (nc_free(ctx, ctx->muon_scratch)) return 1;
        ctx->muon_scratch = nullptr;
        ctx->muon_scratch_bytes = 0;
        if (nc_malloc(ctx, (void **)&ctx->muon_scratch, (int64_t)need)) return 1;
        ctx->muon_scratch_bytes = need;
    }
    float *x = ctx->muon_scratch, *xn = x + n, *a = xn + n, *a2 = a + K * small * small, *norms = a2 + K * small * small;
    float *st = norms + K;
    cudaStream_t s = ctx->stream;
    unsigned nb = nc_blocks(n, 256);
    // 1. Nesterov momentum
    muon_momentum_kernel<<<nb, 256, 0, s>>>(x, momentum, grads, n, mu);
    NC_LAUNCHED(ctx, "muon_momentum");
    // 3. MuonEq, 4. normalise so the spectral norm is below 1
    frobenius_kernel<<<(unsigned)K, 1024, 0, s>>>(norms, x, size);
    muon_eq_kernel<<<(unsigned)(K * rows), 256, 0, s>>>(x, norms, rows, cols);
    frobenius_kernel<<<(unsigned)K, 1024, 0, s>>>(norms, x, size);
    scale_by_norm_kernel<<<nb, 256, 0, s>>>(x, norms, size, n, 1.f, 1.01f, 1e-6f, -INFINITY);
    NC_LAUNCHED(ctx, "muon_normalise");
    // 5. Polar Express: A = X X^T (wide) or X^T X (tall); B = b A + c A^2; X = a X + B X (or X B)
    for (int it = 0; it < ns_steps; it++) {
        const float *c3 = polar_express[it < 5 ? it : 4];
        if (rows > cols) {
            if (nc_matmul_batched(ctx, a, x, x, K, cols, cols, rows, 1, 0, 1.f, 0.f, bf16)) return 1;
        } else {
            if (nc_matmul_batched(ctx, a, x, x, K, rows, rows, cols, 0, 1, 1.f, 0.f, bf16)) return 1;
        }
        if (nc_matmul_batched(ctx, a2, a, a, K, small, small, small, 0, 0, c3[2], 0.f, bf16)) return 1;
        axpy_kernel<<<nc_blocks(K * small * small, 256), 256, 0, s>>>(a2, a, c3[1], K * small * small);
        NC_LAUNCHED(ctx, "polar_express_axpy");
        NC_CUDA(ctx, cudaMemcpyAsync(xn, x, n * sizeof(float), cudaMemcpyDeviceToDevice, s));
        if (rows > cols) {
            if (nc_matmul_batched(ctx, xn, x, a2, K, rows, cols, cols, 0, 0, 1.f, c3[0], bf16)) return 1;
        } else {
            if (nc_matmul_batched(ctx, xn, a2, x, K, rows, cols, rows, 0, 0, 1.f, c3[0], bf16)) return 1;
        }
        float *t = x; x = xn; xn = t;
    }
    // 6. Muon+: Frobenius norm sqrt(min(rows, cols))
    frobenius_kernel<<<(unsigned)K, 1024, 0, s>>>(norms, x, size);
    scale_by_norm_kernel<<<nb, 256, 0, s>>>(x, norms, size, n, sqrtf((float)small), 1.f, 0.f, 1e-6f);
    // 7. NorMuon, 9. cautious weight decay and the update at lr * sqrt(max(1, rows / cols))
    normuon_stats_kernel<<<(unsigned)(K * m), 256, 0, s>>>(st, x, rows, cols, per_row);
    normuon_update_kernel<<<(unsigned)K, 1024, 0, s>>>(st, second, m, (float)(per_row ? cols : rows), beta2);
    float lr_eff = lr * sqrtf(fmaxf(1.f, (float)rows / (float)cols));
    muon_update_kernel<<<nb, 256, 0, s>>>(params, x, st, rows, cols, per_row, n, lr_eff, weight_decay);
    NC_LAUNCHED(ctx, "muon_update");
    return 0;
}
