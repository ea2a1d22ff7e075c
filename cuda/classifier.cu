// The logit softcap and cross-entropy, fused, with the gradient written over the logits (llm.c's fused
// classifier): c = cap * tanh(z / cap) lies in [-cap, cap], so exp(c - cap) cannot overflow and no max pass is
// needed. loss = log(sum exp c) - c[target]; dz = (softmax(c) - onehot) * (1 - tanh^2) * grad_scale.
#include "common.cuh"

#include <cuda_bf16.h>

// The logits' element: fp32, or bf16 (the bf16 loss: upstream's logits come out of the bf16 product as bf16); the
// arithmetic is fp32 either way.
__device__ __forceinline__ float load_logit(const float *z, int64_t j) { return z[j]; }
__device__ __forceinline__ float load_logit(const __nv_bfloat16 *z, int64_t j) { return __bfloat162float(z[j]); }
__device__ __forceinline__ void store_logit(float *z, int64_t j, float v) { z[j] = v; }
__device__ __forceinline__ void store_logit(__nv_bfloat16 *z, int64_t j, float v) { z[j] = __float2bfloat16_rn(v); }

template <typename T>
__global__ void softcap_ce_kernel(T *logits, float *losses, const int32_t *targets, const float *weights,
                                  int64_t vocab, int64_t ld, float cap, float grad_scale) {
    __shared__ float s32[32];
    T *z = logits + blockIdx.x * ld;
    int target = targets[blockIdx.x];
    float inv = 1.f / cap, sum = 0.f;
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) sum += __expf(cap * tanhf(load_logit(z, j) * inv) - cap);
    sum = block_sum(sum, s32);
    float lse = cap + logf(sum);
    if (threadIdx.x == 0) losses[blockIdx.x] = target < 0 ? 0.f : lse - cap * tanhf(load_logit(z, target) * inv);
    if (grad_scale == 0.f) return;
    if (weights) grad_scale *= weights[blockIdx.x];
    __syncthreads();  // thread 0 read z[target] above; it is overwritten below
    for (int64_t j = threadIdx.x; j < ld; j += blockDim.x) {
        float g = 0.f;
        if (target >= 0 && j < vocab) {
            float t = tanhf(load_logit(z, j) * inv);
            g = (__expf(cap * t - lse) - (j == target ? 1.f : 0.f)) * (1.f - t * t) * grad_scale;
        }
        store_logit(z, j, g);
    }
}

int nc_softcap_cross_entropy(nc_context *ctx, float *logits, float *losses, const int32_t *targets, const float *weights,
                             int64_t rows, int64_t vocab, int64_t ld, float softcap, float grad_scale) {
    if (vocab > ld) return nc_fail(ctx, "nc_softcap_cross_entropy", "vocab is larger than the row stride");
    softcap_ce_kernel<float><<<(unsigned)rows, 1024, 0, ctx->stream>>>(logits, losses, targets, weights, vocab, ld, softcap, grad_scale);
    NC_LAUNCHED(ctx, "softcap_cross_entropy");
    return 0;
}

int nc_softcap_cross_entropy_bf16(nc_context *ctx, void *logits, float *losses, const int32_t *targets, const float *weights,
                                  int64_t rows, int64_t vocab, int64_t ld, float softcap, float grad_scale) {
    if (vocab > ld) return nc_fail(ctx, "nc_softcap_cross_entropy_bf16", "vocab is larger than the row stride");
    softcap_ce_kernel<__nv_bfloat16><<<(unsigned)rows, 1024, 0, ctx->stream>>>((__nv_bfloat16 *)logits, losses, targets, weights,
                                                                              vocab, ld, softcap, grad_scale);
    NC_LAUNCHED(ctx, "softcap_cross_entropy_bf16");
    return 0;
}

// One block sums the whole vector (a step's losses: at most a few hundred thousand values), in double.
__global__ void dot_kernel(float *out, const float *x, const float *w, int64_t n, int accumulate) {
    __shared__ double partial[1024];
    double sum = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += (double)x[i] * (w ? (double)w[i] : 1.0);
    partial[threadIdx.x] = sum;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = (float)((accumulate ? (double)out[0] : 0.0) + partial[0]);
}

int nc_dot(nc_context *ctx, float *out, const float *x, const float *w, int64_t n, int accumulate) {
    dot_kernel<<<1, 1024, 0, ctx->stream>>>(out, x, w, n, accumulate);
    NC_LAUNCHED(ctx, "dot");
    return 0;
}
