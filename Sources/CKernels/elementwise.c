// Row and element-wise kernels of training (see ckernels.h): RMSNorm, the rotary embedding fused with the QK norm,
// and the optimizer's element-wise updates (AdamW; Muon's momentum and its cautious update). Each is written once as
// plain loops (a *_body function) and compiled three times: at the baseline (SSE2 on x86-64), with AVX2 + FMA, and
// with AVX-512 at 512-bit width, the compiler vectorizing the loops for each; nc_kernel_level() picks one. Their sums
// of squares may be reassociated (NC_REASSOCIATE), so that they vectorize too; they are accumulated in double. Swift compiles for the x86-64
// baseline, so in Swift these loops ran four floats at a time at best.
#include "ckernels.h"

#include <float.h>
#include <math.h>

#include "kernel_dispatch.h"

// accumulated in double (each product exact there), as the CUDA library's host reference does: the norms' statistics
// then round once, and runs on different kernel sets agree to the last bit more often
NC_BODY float sum_of_products(const float *x, const float *y, int n) {
    double s = 0;
    {
        NC_REASSOCIATE
        for (int j = 0; j < n; j++) s += (double)x[j] * (double)y[j];
    }
    return (float)s;
}

// y = x / sqrt(mean(x^2) + eps), eps float32's machine epsilon (PyTorch's F.rms_norm default); returns 1 / sqrt(...)
NC_BODY float rmsnorm_row_body(const float *x, float *y, int c) {
    float inv = 1 / sqrtf(sum_of_products(x, x, c) / (float)c + FLT_EPSILON);
    for (int j = 0; j < c; j++) y[j] = x[j] * inv;
    return inv;
}
NC_DISPATCH(float, rmsnorm_row, (const float *x, float *y, int c), (x, y, c))

// dx += inv (g - y mean(g . y))
NC_BODY void rmsnorm_backward_row_body(const float *g, const float *y, float inv, int c, float *dx) {
    float m = sum_of_products(g, y, c) / (float)c;
    for (int j = 0; j < c; j++) dx[j] += inv * (g[j] - y[j] * m);
}
NC_DISPATCH_VOID(rmsnorm_backward_row, (const float *g, const float *y, float inv, int c, float *dx), (g, y, inv, c, dx))

// rotation of the two halves, then RMSNorm over the row and the gain
NC_BODY float rotary_norm_row_body(const float *x, float *y, const float *cs, const float *sn, int d, float gain) {
    int half = d / 2;
    for (int j = 0; j < half; j++) {
        float x1 = x[j], x2 = x[j + half];
        y[j] = x1 * cs[j] + x2 * sn[j];
        y[j + half] = -x1 * sn[j] + x2 * cs[j];
    }
    float inv = 1 / sqrtf(sum_of_products(y, y, d) / (float)d + FLT_EPSILON);
    float k = inv * gain;
    for (int j = 0; j < d; j++) y[j] *= k;
    return inv;
}
NC_DISPATCH(float, rotary_norm_row, (const float *x, float *y, const float *cs, const float *sn, int d, float gain),
            (x, y, cs, sn, d, gain))

// out = gain yhat with yhat = y inv: dy = inv (gain g - yhat mean(gain g . yhat)), and mean(gain g . yhat) =
// mean(g . out); then the rotation's transpose
NC_BODY void rotary_norm_backward_row_body(const float *g, const float *out, const float *cs, const float *sn, float inv,
                                           float gain, int d, float *dx) {
    int half = d / 2;
    float m = sum_of_products(g, out, d) / (float)d, inv_gain = 1 / gain;
    for (int j = 0; j < half; j++) {
        float d1 = inv * (gain * g[j] - out[j] * inv_gain * m);
        float d2 = inv * (gain * g[j + half] - out[j + half] * inv_gain * m);
        dx[j] += d1 * cs[j] - d2 * sn[j];
        dx[j + half] += d1 * sn[j] + d2 * cs[j];
    }
}
NC_DISPATCH_VOID(rotary_norm_backward_row,
                 (const float *g, const float *out, const float *cs, const float *sn, float inv, float gain, int d, float *dx),
                 (g, out, cs, sn, inv, gain, d, dx))

// decoupled weight decay, then Adam's moments and the bias-corrected step; no gradient (NULL) counts as zero
NC_BODY void adamw_update_body(float *p, float *m, float *v, const float *grad, long n, float grad_scale, float decay,
                               float beta1, float beta2, float step_size, float bias2_sqrt, float eps) {
    for (long i = 0; i < n; i++) {
        float g = grad ? grad[i] * grad_scale : 0;
        float mi = m[i] + (1 - beta1) * (g - m[i]);
        float vi = v[i] + (1 - beta2) * (g * g - v[i]);
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step_size * mi / (NC_SQRT(vi) / bias2_sqrt + eps);
    }
}
NC_DISPATCH_VOID(adamw_update,
                 (float *p, float *m, float *v, const float *grad, long n, float grad_scale, float decay, float beta1,
                  float beta2, float step_size, float bias2_sqrt, float eps),
                 (p, m, v, grad, n, grad_scale, decay, beta1, beta2, step_size, bias2_sqrt, eps))

// Nesterov momentum: M = mu M + (1 - mu) G, U = (1 - mu) G + mu M
NC_BODY void muon_momentum_body(float *m, const float *grad, float *u, long n, float grad_scale, float mu) {
    for (long i = 0; i < n; i++) {
        float g = grad ? grad[i] * grad_scale : 0;
        float mi = m[i] + (1 - mu) * (g - m[i]);
        m[i] = mi;
        u[i] = g + mu * (mi - g);
    }
}
NC_DISPATCH_VOID(muon_momentum, (float *m, const float *grad, float *u, long n, float grad_scale, float mu),
                 (m, grad, u, n, grad_scale, mu))

// p -= lr u, and the weight decay only where the update and the weight agree in sign (cautious weight decay)
NC_BODY void muon_update_body(float *p, const float *u, long n, float lr, float wd) {
    for (long i = 0; i < n; i++) {
        float decay = u[i] * p[i] >= 0 ? lr * wd * p[i] : 0;
        p[i] -= lr * u[i] + decay;
    }
}
NC_DISPATCH_VOID(muon_update, (float *p, const float *u, long n, float lr, float wd), (p, u, n, lr, wd))
