// RMSNorm over the last dimension (no weight), forward and backward: one block per row. The normed output y is fp32
// or bf16 (y_bf16: the attention's and the MLP's inputs, which only bf16 products read); the math is fp32 either way.
#include <float.h>

#include "common.cuh"

typedef __nv_bfloat16 bf16;

template <typename Y>
__global__ void rmsnorm_forward_kernel(Y *y, float *rstd, const float *x, int64_t cols) {
    __shared__ float s32[32];
    const float *xr = x + blockIdx.x * cols;
    Y *yr = y + blockIdx.x * cols;
    float ss = 0.f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) ss += xr[j] * xr[j];
    ss = block_sum(ss, s32);
    float r = rsqrtf(ss / (float)cols + FLT_EPSILON);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) nc_store(yr, j, xr[j] * r);
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}

// the scalar mix, written, and its norm: one block per row; each thread reads back only what it wrote itself
template <typename Y>
__global__ void mix_rmsnorm_forward_kernel(float *mixed, Y *y, float *rstd, const float *a, const float *b, const float *alpha,
                                           const float *beta, int64_t cols) {
    __shared__ float s32[32];
    float sa = alpha[0], sb = beta[0];
    const float *ar = a + blockIdx.x * cols, *br = b + blockIdx.x * cols;
    float *mr = mixed + blockIdx.x * cols;
    Y *yr = y + blockIdx.x * cols;
    float ss = 0.f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
        float m = sa * ar[j] + sb * br[j];
        mr[j] = m;
        ss += m * m;
    }
    ss = block_sum(ss, s32);
    float r = rsqrtf(ss / (float)cols + FLT_EPSILON);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) nc_store(yr, j, mr[j] * r);
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}

template <typename Y>
__global__ void rmsnorm_backward_kernel(float *dx, const float *dy, const Y *y, const float *rstd, int64_t cols, int accumulate) {
    __shared__ float s32[32];
    const float *gr = dy + blockIdx.x * cols;
    const Y *yr = y + blockIdx.x * cols;
    float *dr = dx + blockIdx.x * cols;
    float dot = 0.f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) dot += gr[j] * nc_load(yr, j);
    float mean = block_sum(dot, s32) / (float)cols;
    float r = rstd[blockIdx.x];
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
        float g = r * (gr[j] - nc_load(yr, j) * mean);
        dr[j] = accumulate ? dr[j] + g : g;
    }
}

static int row_threads(int64_t cols) { return cols >= 1024 ? 1024 : cols >= 256 ? 256 : 128; }

int nc_mix_rmsnorm_forward(nc_context *ctx, float *mixed, void *y, int y_bf16, float *rstd, const float *a, const float *b,
                           const float *alpha, int64_t ia, const float *beta, int64_t ib, int64_t rows, int64_t cols) {
    if (rows == 0) return 0;
    if (y_bf16)
        mix_rmsnorm_forward_kernel<<<(unsigned)rows, row_threads(cols), 0, ctx->stream>>>(mixed, (bf16 *)y, rstd, a, b, alpha + ia,
                                                                                          beta + ib, cols);
    else
        mix_rmsnorm_forward_kernel<<<(unsigned)rows, row_threads(cols), 0, ctx->stream>>>(mixed, (float *)y, rstd, a, b, alpha + ia,
                                                                                          beta + ib, cols);
    NC_LAUNCHED(ctx, "mix_rmsnorm_forward");
    return 0;
}

int nc_rmsnorm_forward(nc_context *ctx, void *y, int y_bf16, float *rstd, const float *x, int64_t rows, int64_t cols) {
    if (rows == 0) return 0;
    if (y_bf16) rmsnorm_forward_kernel<<<(unsigned)rows, row_threads(cols), 0, ctx->stream>>>((bf16 *)y, rstd, x, cols);
    else rmsnorm_forward_kernel<<<(unsigned)rows, row_threads(cols), 0, ctx->stream>>>((float *)y, rstd, x, cols);
    NC_LAUNCHED(ctx, "rmsnorm_forward");
    return 0;
}

int nc_rmsnorm_backward(nc_context *ctx, float *dx, const float *dy, const void *y, int y_bf16, const float *rstd, int64_t rows,
                        int64_t cols, int accumulate) {
    if (rows == 0) return 0;
    if (y_bf16)
        rmsnorm_backward_kernel<<<(unsigned)rows, row_threads(cols), 0, ctx->stream>>>(dx, dy, (const bf16 *)y, rstd, cols, accumulate);
    else
        rmsnorm_backward_kernel<<<(unsigned)rows, row_threads(cols), 0, ctx->stream>>>(dx, dy, (const float *)y, rstd, cols, accumulate);
    NC_LAUNCHED(ctx, "rmsnorm_backward");
    return 0;
}
