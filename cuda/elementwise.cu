// Element-wise kernels: the MLP's relu².
#include "common.cuh"

__global__ void relu2_forward_kernel(float *y, const float *x, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) { float r = fmaxf(x[i], 0.f); y[i] = r * r; }
}

__global__ void relu2_backward_kernel(float *dx, const float *dy, const float *x, int64_t n, int accumulate) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) {
        float g = 2.f * fmaxf(x[i], 0.f) * dy[i];
        dx[i] = accumulate ? dx[i] + g : g;
    }
}

int nc_relu2_forward(nc_context *ctx, float *y, const float *x, int64_t n) {
    relu2_forward_kernel<<<nc_blocks(n, 256), 256, 0, ctx->stream>>>(y, x, n);
    NC_LAUNCHED(ctx, "relu2_forward");
    return 0;
}

int nc_relu2_backward(nc_context *ctx, float *dx, const float *dy, const float *x, int64_t n, int accumulate) {
    relu2_backward_kernel<<<nc_blocks(n, 256), 256, 0, ctx->stream>>>(dx, dy, x, n, accumulate);
    NC_LAUNCHED(ctx, "relu2_backward");
    return 0;
}
