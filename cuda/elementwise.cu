// Element-wise kernels: the MLP's relu², y = a x + b y (sums, scalings, gradient accumulation), the logit softcap.
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

__global__ void axpby_kernel(float *y, const float *x, float a, const float *scale, float b, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) {
        float s = scale ? a * scale[0] : a;
        y[i] = b == 0.f ? s * x[i] : s * x[i] + b * y[i];
    }
}

int nc_axpby(nc_context *ctx, float *y, const float *x, float a, const float *scale, float b, int64_t n) {
    axpby_kernel<<<nc_blocks(n, 256), 256, 0, ctx->stream>>>(y, x, a, scale, b, n);
    NC_LAUNCHED(ctx, "axpby");
    return 0;
}

__global__ void softcap_kernel(float *x, int64_t n, float cap) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) x[i] = cap * tanhf(x[i] / cap);
}

int nc_softcap(nc_context *ctx, float *x, int64_t n, float cap) {
    softcap_kernel<<<nc_blocks(n, 256), 256, 0, ctx->stream>>>(x, n, cap);
    NC_LAUNCHED(ctx, "softcap");
    return 0;
}
