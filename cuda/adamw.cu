// AdamW in upstream's form, in fp32: decoupled weight decay first, then the bias-corrected step.
#include "common.cuh"

__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, int64_t n, float lr, float beta1, float beta2,
                             float eps, float decay, float step_size, float bias2) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = g[i], pi = p[i] * decay;
    float mi = m[i] + (1.f - beta1) * (gi - m[i]);
    float vi = v[i] + (1.f - beta2) * (gi * gi - v[i]);
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - step_size * mi / (sqrtf(vi / bias2) + eps);
}

int nc_adamw_step(nc_context *ctx, float *p, const float *g, float *m, float *v, int64_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int step) {
    if (step < 1) return nc_fail(ctx, "nc_adamw_step", "step counts from 1");
    float bias1 = 1.f - powf(beta1, (float)step), bias2 = 1.f - powf(beta2, (float)step);
    adamw_kernel<<<nc_blocks(n, 256), 256, 0, ctx->stream>>>(p, g, m, v, n, lr, beta1, beta2, eps,
                                                            1.f - lr * weight_decay, lr / bias1, bias2);
    NC_LAUNCHED(ctx, "adamw");
    return 0;
}
