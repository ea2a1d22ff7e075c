// Shared by every kernel family: the context, error reporting, launch helpers, warp reductions.
#pragma once
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

#include "caching_allocator.h"
#include "nanochat_cuda.h"
#include "nanochat_cudnn.h"

// libnanochat_cudnn.so when it loaded beside this library (context.cu): cuDNN's fused attention for the bf16 path.
struct nc_cudnn {
    void *library;
    ncd_state *state;
    decltype(&ncd_attention_forward) forward;
    decltype(&ncd_attention_backward) backward;
    decltype(&ncd_error) error;
    decltype(&ncd_destroy) destroy;
};

// One cuBLASLt plan per product shape (matmul.cu): made on the shape's first call, reused after.
struct nc_matmul_plan;

// NCCL, its communicator and the collectives' stream (nccl.cu), once nc_nccl_* has loaded it.
struct nc_nccl;
void nc_nccl_destroy(nc_context *ctx);

struct nc_context {
    int device;
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *workspace;  // cuBLASLt workspace
    size_t workspace_bytes;
    float *bf16_scratch;  // room for A and B rounded to bf16 (grown on demand)
    size_t bf16_scratch_bytes;
    float *muon_scratch;  // Muon's working matrices (grown on demand)
    size_t muon_scratch_bytes;
    nc_caching_allocator cache;  // every device allocation, the scratch above included (nc_malloc, nc_free)
    nc_cudnn *cudnn;      // cuDNN's attention, or null (then the WMMA kernels)
    int use_cudnn;        // 1 while the bf16 attention goes through cuDNN (nc_attention_select)
    char attention_backend[256];  // what the bf16 attention runs, and why not cuDNN when it does not
    nc_matmul_plan *plans;  // the products' plans (a training step repeats a few dozen shapes)
    int plan_count, plan_capacity;
    nc_nccl *nccl;          // collectives between GPUs, or null
    char error[512];
};

// Releases the products' plans (nc_destroy).
void nc_matmul_plans_destroy(nc_context *ctx);

// Records the failure in ctx->error and returns 1; the op returns that status.
int nc_fail(nc_context *ctx, const char *what, const char *detail);

// Zeroes dq [B, T, H, D], dk and dv [B, T, Hkv, D] on the stream: the atomics kernels' start when the caller asked
// for written gradients (attention.cu).
int nc_attention_zero_grads(nc_context *ctx, float *dq, float *dk, float *dv, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                            int64_t D);

// The softmax backward's row term of both attention backward paths (attention.cu): delta[b, h, i] = dO[i] . O[i],
// for o, dout [B, T, H, D] with D 32, 64 or 128.
int nc_attention_delta(nc_context *ctx, float *delta, const float *o, const float *dout, int64_t B, int64_t T, int64_t H,
                       int64_t D);

#define NC_CUDA(ctx, call)                                                      \
    do {                                                                        \
        cudaError_t err_ = (call);                                              \
        if (err_ != cudaSuccess) return nc_fail(ctx, #call, cudaGetErrorString(err_)); \
    } while (0)

// After a launch: a bad configuration shows up here, not at the next call.
#define NC_LAUNCHED(ctx, name) NC_CUDA(ctx, cudaGetLastError())

static inline unsigned int nc_blocks(int64_t n, int threads) { return (unsigned int)((n + threads - 1) / threads); }

// Element i of a tensor that holds fp32 or bf16 values (the y_bf16 / *_bf16 flags of nanochat_cuda.h): read as fp32,
// written rounded to nearest even. A kernel taking either is a template over the element type.
__device__ __forceinline__ float nc_load(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ float nc_load(const __nv_bfloat16 *p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void nc_store(float *p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void nc_store(__nv_bfloat16 *p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over a block of up to 1024 threads (blockDim.x a multiple of 32); every thread gets the total.
__device__ __forceinline__ float block_sum(float v, float *shared32) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // shared32 may still be read by a previous call
    if (lane == 0) shared32[warp] = v;
    __syncthreads();
    v = lane < warps ? shared32[lane] : 0.f;
    return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float *shared32) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) shared32[warp] = v;
    __syncthreads();
    v = lane < warps ? shared32[lane] : -INFINITY;
    return warp_max(v);
}
