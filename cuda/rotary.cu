// Rotary embedding (half-split layout) fused with the QK RMSNorm and its gain: one warp per (b, t, head) row.
// y1 = x1 cos + x2 sin, y2 = -x1 sin + x2 cos; out = gain * y / rms(y).
#include <float.h>

#include "common.cuh"

// one row r of [b, t, h, d] by one warp
__device__ void rotary_norm_forward_row(float *y, float *rstd, const float *x, const float *cos_t, const float *sin_t,
                                        int64_t r, int64_t t, int64_t h, int64_t d, int64_t offset, float gain) {
    int lane = threadIdx.x & 31;
    int64_t half = d / 2, pos = offset + (r / h) % t;
    const float *xr = x + r * d, *cr = cos_t + pos * half, *sr = sin_t + pos * half;
    float *yr = y + r * d;
    float ss = 0.f;
    for (int64_t j = lane; j < half; j += 32) {
        float x1 = xr[j], x2 = xr[j + half];
        float y1 = x1 * cr[j] + x2 * sr[j], y2 = -x1 * sr[j] + x2 * cr[j];
        yr[j] = y1;
        yr[j + half] = y2;
        ss += y1 * y1 + y2 * y2;
    }
    float inv = rsqrtf(warp_sum(ss) / (float)d + FLT_EPSILON);
    __syncwarp();
    for (int64_t j = lane; j < d; j += 32) yr[j] *= inv * gain;
    if (lane == 0) rstd[r] = inv;
}

__global__ void rotary_norm_forward_kernel(float *y, float *rstd, const float *x, const float *cos_t,
                                           const float *sin_t, int64_t rows, int64_t t, int64_t h, int64_t d,
                                           int64_t offset, float gain) {
    int64_t r = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
    if (r < rows) rotary_norm_forward_row(y, rstd, x, cos_t, sin_t, r, t, h, d, offset, gain);
}

// the queries' rows first, then the keys': one launch for both
__global__ void rotary_norm_qk_forward_kernel(float *yq, float *rq, const float *q, int64_t hq, float *yk, float *rk,
                                              const float *k, int64_t hk, const float *cos_t, const float *sin_t,
                                              int64_t b, int64_t t, int64_t d, int64_t offset, float gain) {
    int64_t r = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32, rows_q = b * t * hq;
    if (r < rows_q) rotary_norm_forward_row(yq, rq, q, cos_t, sin_t, r, t, hq, d, offset, gain);
    else if (r - rows_q < b * t * hk) rotary_norm_forward_row(yk, rk, k, cos_t, sin_t, r - rows_q, t, hk, d, offset, gain);
}

__global__ void rotary_norm_backward_kernel(float *dx, const float *dy, const float *y, const float *rstd,
                                            const float *cos_t, const float *sin_t, int64_t rows, int64_t t, int64_t h,
                                            int64_t d, int64_t offset, float gain, int accumulate) {
    int64_t r = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
    if (r >= rows) return;
    int lane = threadIdx.x & 31;
    int64_t half = d / 2, pos = offset + (r / h) % t;
    const float *gr = dy + r * d, *orow = y + r * d, *cr = cos_t + pos * half, *sr = sin_t + pos * half;
    float *dr = dx + r * d;
    float dot = 0.f;
    for (int64_t j = lane; j < d; j += 32) dot += gr[j] * orow[j];
    float m = warp_sum(dot) / (float)d, inv = rstd[r];
    // out = gain * yhat, yhat = y * inv: d(y) = inv * (gain*g - yhat * mean(g . out)), yhat = out / gain
    for (int64_t j = lane; j < half; j += 32) {
        float d1 = inv * (gain * gr[j] - orow[j] / gain * m);
        float d2 = inv * (gain * gr[j + half] - orow[j + half] / gain * m);
        float g1 = d1 * cr[j] - d2 * sr[j], g2 = d1 * sr[j] + d2 * cr[j];
        dr[j] = accumulate ? dr[j] + g1 : g1;
        dr[j + half] = accumulate ? dr[j + half] + g2 : g2;
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

int nc_rotary_norm_qk_forward(nc_context *ctx, float *yq, float *rstd_q, const float *q, int64_t hq, float *yk, float *rstd_k,
                              const float *k, int64_t hk, const float *cos_t, const float *sin_t, int64_t b, int64_t t, int64_t d,
                              int64_t offset, float gain) {
    int64_t rows = b * t * (hq + hk);
    if (rows == 0) return 0;
    rotary_norm_qk_forward_kernel<<<nc_blocks(rows, 8), 256, 0, ctx->stream>>>(yq, rstd_q, q, hq, yk, rstd_k, k, hk, cos_t, sin_t,
                                                                               b, t, d, offset, gain);
    NC_LAUNCHED(ctx, "rotary_norm_qk_forward");
    return 0;
}

int nc_rotary_norm_backward(nc_context *ctx, float *dx, const float *dy, const float *y, const float *rstd,
                            const float *cos_t, const float *sin_t, int64_t b, int64_t t, int64_t h, int64_t d,
                            int64_t offset, float gain, int accumulate) {
    int64_t rows = b * t * h;
    rotary_norm_backward_kernel<<<nc_blocks(rows, 8), 256, 0, ctx->stream>>>(dx, dy, y, rstd, cos_t, sin_t, rows, t, h,
                                                                             d, offset, gain, accumulate);
    NC_LAUNCHED(ctx, "rotary_norm_backward");
    return 0;
}
