// Rotary embedding (half-split layout) fused with the QK RMSNorm and its gain: one warp per (b, t, head) row.
// y1 = x1 cos + x2 sin, y2 = -x1 sin + x2 cos; out = gain * y / rms(y). The queries' and keys' inputs and outputs may be
// bf16 (the training path: the products write them in bf16, attention reads them so); the math is fp32, each output
// rounded once.
#include <float.h>

#include "common.cuh"

typedef __nv_bfloat16 bf16;

// one row r of [b, t, h, d] by one warp: the rotation twice (for the norm, then scaled into y), so that y is written
// once in its own precision; x and y fp32 or bf16
template <typename X, typename Y>
__device__ void rotary_norm_forward_row(Y *y, float *rstd, const X *x, const float *cos_t, const float *sin_t,
                                        int64_t r, int64_t t, int64_t h, int64_t d, int64_t offset, float gain) {
    int lane = threadIdx.x & 31;
    int64_t half = d / 2, pos = offset + (r / h) % t;
    const X *xr = x + r * d;
    const float *cr = cos_t + pos * half, *sr = sin_t + pos * half;
    Y *yr = y + r * d;
    float ss = 0.f;
    for (int64_t j = lane; j < half; j += 32) {
        float x1 = nc_load(xr, j), x2 = nc_load(xr, j + half);
        float y1 = x1 * cr[j] + x2 * sr[j], y2 = -x1 * sr[j] + x2 * cr[j];
        ss += y1 * y1 + y2 * y2;
    }
    float inv = rsqrtf(warp_sum(ss) / (float)d + FLT_EPSILON), s = inv * gain;
    for (int64_t j = lane; j < half; j += 32) {
        float x1 = nc_load(xr, j), x2 = nc_load(xr, j + half);
        nc_store(yr, j, (x1 * cr[j] + x2 * sr[j]) * s);
        nc_store(yr, j + half, (-x1 * sr[j] + x2 * cr[j]) * s);
    }
    if (lane == 0) rstd[r] = inv;
}

__global__ void rotary_norm_forward_kernel(float *y, float *rstd, const float *x, const float *cos_t,
                                           const float *sin_t, int64_t rows, int64_t t, int64_t h, int64_t d,
                                           int64_t offset, float gain) {
    int64_t r = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
    if (r < rows) rotary_norm_forward_row(y, rstd, x, cos_t, sin_t, r, t, h, d, offset, gain);
}

// the queries' rows first, then the keys': one launch for both
template <typename T>
__global__ void rotary_norm_qk_forward_kernel(T *yq, float *rq, const T *q, int64_t hq, T *yk, float *rk,
                                              const T *k, int64_t hk, const float *cos_t, const float *sin_t,
                                              int64_t b, int64_t t, int64_t d, int64_t offset, float gain) {
    int64_t r = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32, rows_q = b * t * hq;
    if (r < rows_q) rotary_norm_forward_row(yq, rq, q, cos_t, sin_t, r, t, hq, d, offset, gain);
    else if (r - rows_q < b * t * hk) rotary_norm_forward_row(yk, rk, k, cos_t, sin_t, r - rows_q, t, hk, d, offset, gain);
}

// dx (DX: fp32 or bf16) in rows of dx_ld elements: row (b, t, head) at (b * t) * dx_ld + head * d
template <typename Y, typename DX, typename DY = float>
__global__ void rotary_norm_backward_kernel(DX *dx, int64_t dx_ld, const DY *dy, const Y *y, const float *rstd,
                                            const float *cos_t, const float *sin_t, int64_t rows, int64_t t, int64_t h,
                                            int64_t d, int64_t offset, float gain, int accumulate) {
    int64_t r = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
    if (r >= rows) return;
    int lane = threadIdx.x & 31;
    int64_t half = d / 2, pos = offset + (r / h) % t;
    const DY *gr = dy + r * d;
    const float *cr = cos_t + pos * half, *sr = sin_t + pos * half;
    const Y *orow = y + r * d;
    DX *dr = dx + (r / h) * dx_ld + (r % h) * d;
    float dot = 0.f;
    for (int64_t j = lane; j < d; j += 32) dot += nc_load(gr, j) * nc_load(orow, j);
    float m = warp_sum(dot) / (float)d, inv = rstd[r];
    // out = gain * yhat, yhat = y * inv: d(y) = inv * (gain*g - yhat * mean(g . out)), yhat = out / gain
    for (int64_t j = lane; j < half; j += 32) {
        float d1 = inv * (gain * nc_load(gr, j) - nc_load(orow, j) / gain * m);
        float d2 = inv * (gain * nc_load(gr, j + half) - nc_load(orow, j + half) / gain * m);
        float g1 = d1 * cr[j] - d2 * sr[j], g2 = d1 * sr[j] + d2 * cr[j];
        nc_store(dr, j, accumulate ? nc_load(dr, j) + g1 : g1);
        nc_store(dr, j + half, accumulate ? nc_load(dr, j + half) + g2 : g2);
    }
}

int nc_rotary_norm_forward(nc_context *ctx, float *y, float *rstd, const float *x, const float *cos_t,
                           const float *sin_t, int64_t b, int64_t t, int64_t h, int64_t d, int64_t offset, float gain) {
    int64_t rows = b * t * h;
    rotary_norm_forward_kernel<<<nc_blocks(rows, 8), 256, 0, ctx->stream>>>(y, rstd, x, cos_t, sin_t, rows, t, h, d,
                                                                            offset, gain);
    NC_LAUNCHED(ctx, "rotary_norm_forward");
    return 0;
}

int nc_rotary_norm_qk_forward(nc_context *ctx, void *yq, float *rstd_q, const void *q, int64_t hq, void *yk, float *rstd_k,
                              const void *k, int64_t hk, const float *cos_t, const float *sin_t, int64_t b, int64_t t, int64_t d,
                              int64_t offset, float gain, int bf16_rows) {
    int64_t rows = b * t * (hq + hk);
    if (rows == 0) return 0;
    if (bf16_rows)
        rotary_norm_qk_forward_kernel<<<nc_blocks(rows, 8), 256, 0, ctx->stream>>>((bf16 *)yq, rstd_q, (const bf16 *)q, hq, (bf16 *)yk,
                                                                                   rstd_k, (const bf16 *)k, hk, cos_t, sin_t, b, t, d,
                                                                                   offset, gain);
    else
        rotary_norm_qk_forward_kernel<<<nc_blocks(rows, 8), 256, 0, ctx->stream>>>((float *)yq, rstd_q, (const float *)q, hq, (float *)yk,
                                                                                   rstd_k, (const float *)k, hk, cos_t, sin_t, b, t, d,
                                                                                   offset, gain);
    NC_LAUNCHED(ctx, "rotary_norm_qk_forward");
    return 0;
}

int nc_rotary_norm_backward(nc_context *ctx, float *dx, const float *dy, const float *y, const float *rstd,
                            const float *cos_t, const float *sin_t, int64_t b, int64_t t, int64_t h, int64_t d,
                            int64_t offset, float gain, int accumulate) {
    int64_t rows = b * t * h;
    if (rows == 0) return 0;
    rotary_norm_backward_kernel<<<nc_blocks(rows, 8), 256, 0, ctx->stream>>>(dx, h * d, dy, y, rstd, cos_t, sin_t, rows, t, h, d, offset,
                                                                             gain, accumulate);
    NC_LAUNCHED(ctx, "rotary_norm_backward");
    return 0;
}

int nc_rotary_norm_backward_bf16_rows(nc_context *ctx, void *dx, int64_t dx_ld, const void *dy, int dy_bf16, const void *y, int y_bf16,
                                      const float *rstd, const float *cos_t, const float *sin_t, int64_t b, int64_t t, int64_t h,
                                      int64_t d, int64_t offset, float gain) {
    int64_t rows = b * t * h;
    if (rows == 0) return 0;
    unsigned blocks = nc_blocks(rows, 8);
    if (y_bf16 && dy_bf16)
        rotary_norm_backward_kernel<<<blocks, 256, 0, ctx->stream>>>((bf16 *)dx, dx_ld, (const bf16 *)dy, (const bf16 *)y, rstd, cos_t, sin_t,
                                                                     rows, t, h, d, offset, gain, 0);
    else if (y_bf16)
        rotary_norm_backward_kernel<<<blocks, 256, 0, ctx->stream>>>((bf16 *)dx, dx_ld, (const float *)dy, (const bf16 *)y, rstd, cos_t, sin_t,
                                                                     rows, t, h, d, offset, gain, 0);
    else if (dy_bf16)
        rotary_norm_backward_kernel<<<blocks, 256, 0, ctx->stream>>>((bf16 *)dx, dx_ld, (const bf16 *)dy, (const float *)y, rstd, cos_t, sin_t,
                                                                     rows, t, h, d, offset, gain, 0);
    else
        rotary_norm_backward_kernel<<<blocks, 256, 0, ctx->stream>>>((bf16 *)dx, dx_ld, (const float *)dy, (const float *)y, rstd, cos_t,
                                                                     sin_t, rows, t, h, d, offset, gain, 0);
    NC_LAUNCHED(ctx, "rotary_norm_backward_bf16_rows");
    return 0;
}
