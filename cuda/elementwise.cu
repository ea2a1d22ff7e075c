// Element-wise kernels: the MLP's relu², y = a x + b y (sums, scalings, gradient accumulation), the logit softcap.
#include <cuda_bf16.h>

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

// bf16 in and out (the bf16 MLP's h and its gradient), fp32 math: two elements per thread (one 32-bit load each)
__global__ void relu2_forward_bf16_kernel(__nv_bfloat16 *y, const __nv_bfloat16 *x, int64_t n) {
    int64_t i = 2 * (blockIdx.x * (int64_t)blockDim.x + threadIdx.x);
    if (i + 1 < n) {
        float2 v = __bfloat1622float2(*(const __nv_bfloat162 *)(x + i));
        v.x = fmaxf(v.x, 0.f); v.y = fmaxf(v.y, 0.f);
        *(__nv_bfloat162 *)(y + i) = __floats2bfloat162_rn(v.x * v.x, v.y * v.y);
    } else if (i < n) {
        float r = fmaxf(__bfloat162float(x[i]), 0.f);
        y[i] = __float2bfloat16(r * r);
    }
}

__global__ void relu2_backward_bf16_kernel(__nv_bfloat16 *dx, const __nv_bfloat16 *dy, const __nv_bfloat16 *x, int64_t n) {
    int64_t i = 2 * (blockIdx.x * (int64_t)blockDim.x + threadIdx.x);
    if (i + 1 < n) {
        float2 v = __bfloat1622float2(*(const __nv_bfloat162 *)(x + i)), g = __bfloat1622float2(*(const __nv_bfloat162 *)(dy + i));
        *(__nv_bfloat162 *)(dx + i) = __floats2bfloat162_rn(2.f * fmaxf(v.x, 0.f) * g.x, 2.f * fmaxf(v.y, 0.f) * g.y);
    } else if (i < n) {
        dx[i] = __float2bfloat16(2.f * fmaxf(__bfloat162float(x[i]), 0.f) * __bfloat162float(dy[i]));
    }
}

__global__ void relu2_backward_from_output_bf16_kernel(__nv_bfloat16 *dx, const __nv_bfloat16 *dy, const __nv_bfloat16 *y, int64_t n) {
    int64_t i = 2 * (blockIdx.x * (int64_t)blockDim.x + threadIdx.x);
    if (i + 1 < n) {
        float2 v = __bfloat1622float2(*(const __nv_bfloat162 *)(y + i)), g = __bfloat1622float2(*(const __nv_bfloat162 *)(dy + i));
        *(__nv_bfloat162 *)(dx + i) = __floats2bfloat162_rn(2.f * sqrtf(v.x) * g.x, 2.f * sqrtf(v.y) * g.y);
    } else if (i < n) {
        dx[i] = __float2bfloat16(2.f * sqrtf(__bfloat162float(y[i])) * __bfloat162float(dy[i]));
    }
}

int nc_relu2_backward_from_output_bf16(nc_context *ctx, void *dx, const void *dy, const void *y, int64_t n) {
    if (n == 0) return 0;
    if (((uintptr_t)y | (uintptr_t)dy | (uintptr_t)dx) & 3)
        return nc_fail(ctx, "nc_relu2_backward_from_output_bf16", "bf16 buffers must be 4-byte aligned");
    relu2_backward_from_output_bf16_kernel<<<nc_blocks((n + 1) / 2, 256), 256, 0, ctx->stream>>>(
        (__nv_bfloat16 *)dx, (const __nv_bfloat16 *)dy, (const __nv_bfloat16 *)y, n);
    NC_LAUNCHED(ctx, "relu2_backward_from_output_bf16");
    return 0;
}

// the pairs' loads need 4-byte alignment: every buffer from the allocator is 512-byte aligned, and the MLP's are whole
int nc_relu2_forward_bf16(nc_context *ctx, void *y, const void *x, int64_t n) {
    if (n == 0) return 0;
    if (((uintptr_t)x | (uintptr_t)y) & 3) return nc_fail(ctx, "nc_relu2_forward_bf16", "bf16 buffers must be 4-byte aligned");
    relu2_forward_bf16_kernel<<<nc_blocks((n + 1) / 2, 256), 256, 0, ctx->stream>>>((__nv_bfloat16 *)y, (const __nv_bfloat16 *)x, n);
    NC_LAUNCHED(ctx, "relu2_forward_bf16");
    return 0;
}

int nc_relu2_backward_bf16(nc_context *ctx, void *dx, const void *dy, const void *x, int64_t n) {
    if (n == 0) return 0;
    if (((uintptr_t)x | (uintptr_t)dy | (uintptr_t)dx) & 3)
        return nc_fail(ctx, "nc_relu2_backward_bf16", "bf16 buffers must be 4-byte aligned");
    relu2_backward_bf16_kernel<<<nc_blocks((n + 1) / 2, 256), 256, 0, ctx->stream>>>((__nv_bfloat16 *)dx, (const __nv_bfloat16 *)dy,
                                                                                      (const __nv_bfloat16 *)x, n);
    NC_LAUNCHED(ctx, "relu2_backward_bf16");
    return 0;
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
