// The engine's KV cache on the GPU: appending a chunk's keys and values at each row's positions, and attention of the
// new queries over what is cached. The cache is head-major, [rows, Hkv, capacity, D] per layer (as the CPU's), so one
// head's positions are contiguous; the chunk is [B, T, Hkv, D] (the projections' layout). Its elements are fp32, or
// bf16 (rounded to nearest even) when the model runs its products in bf16: half the bytes each decode step streams.
#include <cuda_bf16.h>

#include "common.cuh"

__device__ __forceinline__ float load_element(const float *p) { return *p; }
__device__ __forceinline__ float load_element(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void store_element(float *p, float v) { *p = v; }
__device__ __forceinline__ void store_element(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

template <class T>
__global__ void kv_append_kernel(T *cache, const float *src, const int32_t *rows, const int32_t *starts, int64_t t,
                                 int64_t hkv, int64_t d, int64_t cap, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    int64_t j = i % d, h = (i / d) % hkv, ti = (i / (d * hkv)) % t, bi = i / (d * hkv * t);
    store_element(cache + ((rows[bi] * hkv + h) * cap + starts[bi] + ti) * d + j, src[i]);
}

int nc_kv_append(nc_context *ctx, void *cache, const float *src, const int32_t *rows, const int32_t *starts, int64_t b,
                 int64_t t, int64_t hkv, int64_t d, int64_t capacity, int bf16) {
    int64_t n = b * t * hkv * d;
    if (n == 0) return 0;
    if (bf16)
        kv_append_kernel<<<nc_blocks(n, 256), 256, 0, ctx->stream>>>((__nv_bfloat16 *)cache, src, rows, starts, t, hkv, d, capacity, n);
    else
        kv_append_kernel<<<nc_blocks(n, 256), 256, 0, ctx->stream>>>((float *)cache, src, rows, starts, t, hkv, d, capacity, n);
    NC_LAUNCHED(ctx, "kv_append");
    return 0;
}

// One block per (batch row, new position, head): the scores of the cached span in shared memory, softmax, then each
// thread one output dimension, reading the values of every cached position (coalesced across the threads).
template <class T>
__global__ void cached_attention_kernel(float *out, const float *q, const T *kc, const T *vc, const int32_t *rows,
                                        const int32_t *starts, int64_t t, int64_t h, int64_t hkv, int64_t d, int64_t cap,
                                        int64_t window, float scale) {
    extern __shared__ float shared[];  // d query values, then the span's scores
    __shared__ float s32[32];
    int64_t hh = blockIdx.x % h, ti = (blockIdx.x / h) % t, bi = blockIdx.x / (h * t);
    int64_t kh = hh / (h / hkv), p = starts[bi] + ti, lo = p - window > 0 ? p - window : 0, span = p - lo + 1;
    const float *qi = q + ((bi * t + ti) * h + hh) * d;
    float *qs = shared, *scores = shared + d;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) qs[j] = qi[j];
    __syncthreads();
    const T *kb = kc + ((rows[bi] * hkv + kh) * cap + lo) * d, *vb = vc + ((rows[bi] * hkv + kh) * cap + lo) * d;
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < span; j += blockDim.x) {
        float s = 0.f;
        for (int64_t c = 0; c < d; c++) s += qs[c] * load_element(kb + j * d + c);
        s *= scale;
        scores[j] = s;
        mx = fmaxf(mx, s);
    }
    mx = block_max(mx, s32);
    float sum = 0.f;
    for (int64_t j = threadIdx.x; j < span; j += blockDim.x) {
        float e = __expf(scores[j] - mx);
        scores[j] = e;
        sum += e;
    }
    sum = block_sum(sum, s32);  // its barrier also publishes the scores
    float inv = 1.f / sum;
    float *oi = out + ((bi * t + ti) * h + hh) * d;
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
        float acc = 0.f;
        for (int64_t j = 0; j < span; j++) acc += scores[j] * load_element(vb + j * d + c);
        oi[c] = acc * inv;
    }
}

int nc_cached_attention(nc_context *ctx, float *out, const float *q, const void *k_cache, const void *v_cache,
                        const int32_t *rows, const int32_t *starts, int64_t b, int64_t t, int64_t h, int64_t hkv, int64_t d,
                        int64_t capacity, int64_t window, int bf16) {
    if (hkv <= 0 || h % hkv != 0) return nc_fail(ctx, "nc_cached_attention", "the query heads are not a multiple of the KV heads");
    int64_t span = window + 1 < capacity ? window + 1 : capacity;
    size_t bytes = (size_t)(d + span) * sizeof(float);
    if (bytes > 48 * 1024) return nc_fail(ctx, "nc_cached_attention", "the attended span does not fit in shared memory (48 KB: at most ~12000 positions)");
    if (b * t * h == 0) return 0;
    float scale = 1.f / sqrtf((float)d);
    if (bf16)
        cached_attention_kernel<<<(unsigned)(b * t * h), 128, bytes, ctx->stream>>>(
            out, q, (const __nv_bfloat16 *)k_cache, (const __nv_bfloat16 *)v_cache, rows, starts, t, h, hkv, d, capacity, window, scale);
    else
        cached_attention_kernel<<<(unsigned)(b * t * h), 128, bytes, ctx->stream>>>(
            out, q, (const float *)k_cache, (const float *)v_cache, rows, starts, t, h, hkv, d, capacity, window, scale);
    NC_LAUNCHED(ctx, "cached_attention");
    return 0;
}
