// The C ABI of nanochat_cuda.h implemented on the host, in plain C, with the kernels' exact semantics ("device"
// pointers are ordinary host memory). It is not a backend: it exists so that the Swift side of the GPU path (the
// model's ops' device bodies, the optimizer's groups and stacks, the buffers' sizes and offsets) is checked against
// upstream's fixtures on machines without a GPU, CI included:
//   cc -O2 -shared -fPIC cuda/host_emulation.c -o DIR/libnanochat_cuda.so -lm
//   NANOCHAT_CUDA_LIB=DIR/libnanochat_cuda.so nanochat verify --device cuda Tests/Fixtures/gpt_two_layers.safetensors
// The kernels themselves are checked on a GPU by op_check.cu. Accumulations run in double here (the device uses
// fp32 with its own orders), so both land within the fixtures' tolerances of upstream.
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caching_allocator.h"
#include "nanochat_cuda.h"

// NANOCHAT_EMULATION_NO_WORK=1: every kernel returns at once, while allocations, copies between host and "device" and
// the Swift side's own work run as usual. A full-size training step (d12 or d20 at device batch 32) then takes
// milliseconds, and shows what only its shapes decide: the bytes the caching allocator hands out (the peak a GPU run
// reports, less cuBLASLt's and cuDNN's own workspaces) and the host's time to issue a micro-batch
// (tools/memory_at_scale.sh). The values computed are meaningless: the loss is reported as 0.
static int no_work(void) {
    static int flag = -1;
    if (flag < 0) {
        const char *e = getenv("NANOCHAT_EMULATION_NO_WORK");
        flag = e && e[0] == '1';
    }
    return flag;
}

struct nc_context {
    char error[512];
    nc_caching_allocator cache;  // the GPU's allocator, over malloc here
};

static int host_alloc(void *ctx, void **ptr, int64_t bytes) {
    (void)ctx;
    *ptr = no_work() ? calloc(1, (size_t)bytes) : malloc((size_t)bytes);  // no work: a zero loss, pages never touched
    return *ptr ? 0 : 1;
}
static void host_free(void *ctx, void *ptr) {
    (void)ctx;
    free(ptr);
}

static int fail(nc_context *ctx, const char *what, const char *detail) {
    snprintf(ctx->error, sizeof(ctx->error), "%s: %s", what, detail);
    return 1;
}

int nc_create(nc_context **ctx, int device) {
    (void)device;
    *ctx = (nc_context *)calloc(1, sizeof(nc_context));
    return *ctx ? 0 : 1;
}
void nc_destroy(nc_context *ctx) {
    if (!ctx) return;
    nc_cache_destroy(&ctx->cache, host_free, ctx);
    free(ctx);
}
const char *nc_error_string(nc_context *ctx) { return ctx ? ctx->error : "no context"; }
int nc_device_info(nc_context *ctx, char *name, int name_len, int *sm_count, int64_t *memory_bytes) {
    (void)ctx;
    if (name) snprintf(name, name_len, "host emulation of the CUDA ABI (no GPU)");
    if (sm_count) *sm_count = 0;
    if (memory_bytes) *memory_bytes = 0;
    return 0;
}
int nc_malloc(nc_context *ctx, void **ptr, int64_t bytes) {
    if (nc_cache_alloc(&ctx->cache, ptr, bytes, host_alloc, host_free, ctx)) return fail(ctx, "nc_malloc", "out of host memory");
    return 0;
}
int nc_free(nc_context *ctx, void *ptr) {
    if (nc_cache_free(&ctx->cache, ptr, host_free, ctx)) return fail(ctx, "nc_free", "a pointer nc_malloc did not hand out");
    return 0;
}
int nc_allocator_stats(nc_context *ctx, int64_t *in_use, int64_t *peak, int64_t *reserved, int64_t *allocations) {
    if (in_use) *in_use = ctx->cache.bytes_in_use;
    if (peak) *peak = ctx->cache.peak_bytes_in_use;
    if (reserved) *reserved = ctx->cache.bytes_reserved;
    if (allocations) *allocations = ctx->cache.device_allocations;
    return 0;
}
int nc_copy_to_device(nc_context *ctx, void *dst, const void *src, int64_t bytes) { (void)ctx; memcpy(dst, src, bytes); return 0; }
int nc_copy_to_host(nc_context *ctx, void *dst, const void *src, int64_t bytes) { (void)ctx; memcpy(dst, src, bytes); return 0; }
int nc_copy_on_device(nc_context *ctx, void *dst, const void *src, int64_t bytes) {
    (void)ctx;
    if (!no_work()) memmove(dst, src, bytes);
    return 0;
}
int nc_zero(nc_context *ctx, void *ptr, int64_t bytes) {
    (void)ctx;
    if (!no_work()) memset(ptr, 0, bytes);
    return 0;
}
int nc_synchronize(nc_context *ctx) { (void)ctx; return 0; }
int nc_memory_info(nc_context *ctx, int64_t *f, int64_t *t, int64_t *p) {
    if (f) *f = 0;
    if (t) *t = 0;
    if (p) *p = ctx->cache.peak_bytes_in_use;
    return 0;
}

// bf16 values: the top 16 bits of x rounded to nearest even (as the device's bf16 mode rounds), and back
static uint16_t bf16_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}
static float bf16_value(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}
// bf16 products round their inputs so
static float bf16_round(float x) { return bf16_value(bf16_bits(x)); }

// element i of a tensor holding fp32 or (bf16 != 0) bf16 values, read as fp32 / written rounded (the y_bf16 flags)
static float element(const void *p, int64_t i, int bf16) { return bf16 ? bf16_value(((const uint16_t *)p)[i]) : ((const float *)p)[i]; }
static void set_element(void *p, int64_t i, float v, int bf16) {
    if (bf16) ((uint16_t *)p)[i] = bf16_bits(v);
    else ((float *)p)[i] = v;
}


int nc_matmul_batched(nc_context *ctx, float *c, const float *a, const float *b, int64_t batch, int64_t m, int64_t n,
                      int64_t k, int trans_a, int trans_b, float alpha, float beta, int bf16) {
    if (no_work()) return 0;
    (void)ctx;
    for (int64_t z = 0; z < batch; z++) {
        const float *az = a + z * m * k, *bz = b + z * k * n;
        float *cz = c + z * m * n;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t l = 0; l < k; l++) {
                    float x = trans_a ? az[l * m + i] : az[i * k + l], y = trans_b ? bz[j * k + l] : bz[l * n + j];
                    if (bf16) { x = bf16_round(x); y = bf16_round(y); }
                    s += (double)x * y;
                }
                cz[i * n + j] = (float)(alpha * s + (beta == 0 ? 0.0 : (double)beta * cz[i * n + j]));
            }
    }
    return 0;
}

// bf16 values (the top 16 bits of a float) as floats, into a scratch the caller frees
static float *bf16_to_float(const void *p, int64_t n) {
    float *out = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!out) return NULL;
    for (int64_t i = 0; i < n; i++) out[i] = bf16_value(((const uint16_t *)p)[i]);
    return out;
}

int nc_matmul_mixed(nc_context *ctx, float *c, const void *a, int a_bf16, const void *b, int b_bf16, int64_t m, int64_t n,
                    int64_t k, int trans_a, int trans_b, float alpha, float beta) {
    if (no_work()) return 0;
    float *af = a_bf16 ? bf16_to_float(a, m * k) : NULL, *bf = b_bf16 ? bf16_to_float(b, k * n) : NULL;
    if ((a_bf16 && !af) || (b_bf16 && !bf)) { free(af); free(bf); return fail(ctx, "nc_matmul_mixed", "out of host memory"); }
    // a bf16 value rounds to itself: the product below is the bf16 product of the same operands
    int rc = nc_matmul_batched(ctx, c, af ? af : (const float *)a, bf ? bf : (const float *)b, 1, m, n, k, trans_a, trans_b, alpha, beta, 1);
    free(af);
    free(bf);
    return rc;
}

int nc_matmul_bf16_out(nc_context *ctx, void *c, const void *a, int a_bf16, const void *b, int b_bf16, int64_t m, int64_t n,
                       int64_t k, int trans_a, int trans_b) {
    if (no_work()) return 0;
    float *cf = (float *)malloc((size_t)(m * n > 0 ? m * n : 1) * sizeof(float));
    if (!cf) return fail(ctx, "nc_matmul_bf16_out", "out of host memory");
    int rc = nc_matmul_mixed(ctx, cf, a, a_bf16, b, b_bf16, m, n, k, trans_a, trans_b, 1.f, 0.f);
    for (int64_t i = 0; rc == 0 && i < m * n; i++) ((uint16_t *)c)[i] = bf16_bits(cf[i]);  // rounded once, at the end
    free(cf);
    return rc;
}

int nc_from_bf16(nc_context *ctx, float *dst, const void *src, int64_t n) {
    if (no_work()) return 0;
    (void)ctx;
    for (int64_t i = 0; i < n; i++) dst[i] = bf16_value(((const uint16_t *)src)[i]);
    return 0;
}

int nc_to_bf16_rows(nc_context *ctx, void *dst, int64_t ld, const void *src, int src_bf16, int64_t rows, int64_t cols) {
    if (no_work()) return 0;
    (void)ctx;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) ((uint16_t *)dst)[r * ld + c] = bf16_bits(src ? element(src, r * cols + c, src_bf16) : 0.f);
    return 0;
}

int nc_to_bf16(nc_context *ctx, void *dst, const float *src, int64_t n) {
    if (no_work()) return 0;
    (void)ctx;
    for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = bf16_bits(src[i]);
    return 0;
}

int nc_matmul(nc_context *ctx, float *c, const float *a, const float *b, int64_t m, int64_t n, int64_t k, int trans_a,
              int trans_b, float alpha, float beta, int bf16) {
    return nc_matmul_batched(ctx, c, a, b, 1, m, n, k, trans_a, trans_b, alpha, beta, bf16);
}

int nc_rmsnorm_forward(nc_context *ctx, void *y, int y_bf16, float *rstd, const float *x, int64_t rows, int64_t cols) {
    if (no_work()) return 0;
    (void)ctx;
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0;
        for (int64_t j = 0; j < cols; j++) ss += (double)x[r * cols + j] * x[r * cols + j];
        float inv = (float)(1 / sqrt(ss / cols + FLT_EPSILON));
        for (int64_t j = 0; j < cols; j++) set_element(y, r * cols + j, x[r * cols + j] * inv, y_bf16);
        rstd[r] = inv;
    }
    return 0;
}

int nc_mix_rmsnorm_forward(nc_context *ctx, float *mixed, void *y, int y_bf16, float *rstd, const float *a, const float *b,
                           const float *alpha, int64_t ia, const float *beta, int64_t ib, int64_t rows, int64_t cols) {
    if (no_work()) return 0;
    int rc = nc_scalar_mix_forward(ctx, mixed, a, b, alpha, ia, beta, ib, rows * cols);
    if (rc) return rc;
    return nc_rmsnorm_forward(ctx, y, y_bf16, rstd, mixed, rows, cols);
}

int nc_rmsnorm_backward(nc_context *ctx, float *dx, const float *dy, const void *y, int y_bf16, const float *rstd, int64_t rows,
                        int64_t cols, int accumulate) {
    if (no_work()) return 0;
    (void)ctx;
    for (int64_t r = 0; r < rows; r++) {
        double dot = 0;
        for (int64_t j = 0; j < cols; j++) dot += (double)dy[r * cols + j] * element(y, r * cols + j, y_bf16);
        double mean = dot / cols;
        for (int64_t j = 0; j < cols; j++) {
            float g = (float)(rstd[r] * (dy[r * cols + j] - element(y, r * cols + j, y_bf16) * mean));
            dx[r * cols + j] = accumulate ? dx[r * cols + j] + g : g;
        }
    }
    return 0;
}

static int rotary_norm_rows(void *y, int y_bf16, float *rstd, const void *x, int x_bf16, const float *cos_t, const float *sin_t,
                            int64_t b, int64_t t, int64_t h, int64_t d, int64_t offset, float gain) {
    int64_t half = d / 2;
    float *row = malloc((size_t)(d > 0 ? d : 1) * sizeof(float));
    if (!row) return 1;
    for (int64_t r = 0; r < b * t * h; r++) {
        int64_t pos = offset + (r / h) % t;
        const float *cr = cos_t + pos * half, *sr = sin_t + pos * half;
        double ss = 0;
        for (int64_t j = 0; j < half; j++) {
            float x1 = element(x, r * d + j, x_bf16), x2 = element(x, r * d + j + half, x_bf16);
            row[j] = x1 * cr[j] + x2 * sr[j];
            row[j + half] = -x1 * sr[j] + x2 * cr[j];
            ss += (double)row[j] * row[j] + (double)row[j + half] * row[j + half];
        }
        float inv = (float)(1 / sqrt(ss / d + FLT_EPSILON));
        for (int64_t j = 0; j < d; j++) set_element(y, r * d + j, row[j] * (inv * gain), y_bf16);
        rstd[r] = inv;
    }
    free(row);
    return 0;
}

int nc_rotary_norm_forward(nc_context *ctx, float *y, float *rstd, const float *x, const float *cos_t, const float *sin_t,
                           int64_t b, int64_t t, int64_t h, int64_t d, int64_t offset, float gain) {
    if (no_work()) return 0;
    if (rotary_norm_rows(y, 0, rstd, x, 0, cos_t, sin_t, b, t, h, d, offset, gain)) return fail(ctx, "nc_rotary_norm_forward", "out of host memory");
    return 0;
}

int nc_rotary_norm_qk_forward(nc_context *ctx, void *yq, float *rstd_q, const void *q, int64_t hq, void *yk, float *rstd_k,
                              const void *k, int64_t hk, const float *cos_t, const float *sin_t, int64_t b, int64_t t, int64_t d,
                              int64_t offset, float gain, int bf16_rows) {
    if (no_work()) return 0;
    if (rotary_norm_rows(yq, bf16_rows, rstd_q, q, bf16_rows, cos_t, sin_t, b, t, hq, d, offset, gain)
        || rotary_norm_rows(yk, bf16_rows, rstd_k, k, bf16_rows, cos_t, sin_t, b, t, hk, d, offset, gain))
        return fail(ctx, "nc_rotary_norm_qk_forward", "out of host memory");
    return 0;
}

// the backward over y in fp32 or (y_bf16) bf16: the public fp32 entry and the bf16-rows one below
static void rotary_norm_backward_rows(float *dx, const float *dy, const void *y, int y_bf16, const float *rstd, const float *cos_t,
                                      const float *sin_t, int64_t b, int64_t t, int64_t h, int64_t d, int64_t offset, float gain,
                                      int accumulate) {
    int64_t half = d / 2;
    for (int64_t r = 0; r < b * t * h; r++) {
        int64_t pos = offset + (r / h) % t;
        const float *gr = dy + r * d, *cr = cos_t + pos * half, *sr = sin_t + pos * half;
        float *dr = dx + r * d;
        double dot = 0;
        for (int64_t j = 0; j < d; j++) dot += (double)gr[j] * element(y, r * d + j, y_bf16);
        double m = dot / d, inv = rstd[r];
        for (int64_t j = 0; j < half; j++) {
            float o1 = element(y, r * d + j, y_bf16), o2 = element(y, r * d + j + half, y_bf16);
            double d1 = inv * (gain * gr[j] - o1 / gain * m), d2 = inv * (gain * gr[j + half] - o2 / gain * m);
            float g1 = (float)(d1 * cr[j] - d2 * sr[j]), g2 = (float)(d1 * sr[j] + d2 * cr[j]);
            dr[j] = accumulate ? dr[j] + g1 : g1;
            dr[j + half] = accumulate ? dr[j + half] + g2 : g2;
        }
    }
}

int nc_rotary_norm_backward(nc_context *ctx, float *dx, const float *dy, const float *y, const float *rstd,
                            const float *cos_t, const float *sin_t, int64_t b, int64_t t, int64_t h, int64_t d,
                            int64_t offset, float gain, int accumulate) {
    if (no_work()) return 0;
    (void)ctx;
    rotary_norm_backward_rows(dx, dy, y, 0, rstd, cos_t, sin_t, b, t, h, d, offset, gain, accumulate);
    return 0;
}

int nc_rotary_norm_backward_bf16_rows(nc_context *ctx, void *dx, int64_t dx_ld, const void *dy, int dy_bf16, const void *y, int y_bf16,
                                      const float *rstd, const float *cos_t, const float *sin_t, int64_t b, int64_t t, int64_t h,
                                      int64_t d, int64_t offset, float gain) {
    if (no_work()) return 0;
    // the fp32 backward (on dy as floats), then each row rounded into its place
    int64_t rows = b * t * h;
    float *tmp = malloc((size_t)(rows * d > 0 ? rows * d : 1) * sizeof(float));
    float *dyf = dy_bf16 ? bf16_to_float(dy, rows * d) : NULL;
    if (!tmp || (dy_bf16 && !dyf)) { free(tmp); free(dyf); return fail(ctx, "nc_rotary_norm_backward_bf16_rows", "out of host memory"); }
    rotary_norm_backward_rows(tmp, dy_bf16 ? dyf : (const float *)dy, y, y_bf16, rstd, cos_t, sin_t, b, t, h, d, offset, gain, 0);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < d; j++) ((uint16_t *)dx)[(r / h) * dx_ld + (r % h) * d + j] = bf16_bits(tmp[r * d + j]);
    free(tmp);
    free(dyf);
    return 0;
}

// query i attends keys j with i - window <= j <= i; lse [B, H, T]
int nc_attention_forward(nc_context *ctx, float *o, float *lse, const float *q, const float *k, const float *v,
                         int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D, int64_t window) {
    if (no_work()) return 0;
    double *s = (double *)malloc(sizeof(double) * T);
    if (!s) return fail(ctx, "nc_attention_forward", "out of host memory");
    double scale = 1 / sqrt((double)D);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            int64_t kh = h / (H / Hkv);
            for (int64_t i = 0; i < T; i++) {
                int64_t lo = i - window > 0 ? i - window : 0;
                const float *qi = q + ((b * T + i) * H + h) * D;
                double mx = -INFINITY, l = 0;
                for (int64_t j = lo; j <= i; j++) {
                    const float *kj = k + ((b * T + j) * Hkv + kh) * D;
                    double d = 0;
                    for (int64_t e = 0; e < D; e++) d += (double)qi[e] * kj[e];
                    s[j] = d * scale;
                    if (s[j] > mx) mx = s[j];
                }
                for (int64_t j = lo; j <= i; j++) l += exp(s[j] - mx);
                float *oi = o + ((b * T + i) * H + h) * D;
                for (int64_t e = 0; e < D; e++) {
                    double acc = 0;
                    for (int64_t j = lo; j <= i; j++) acc += exp(s[j] - mx) / l * v[((b * T + j) * Hkv + kh) * D + e];
                    oi[e] = (float)acc;
                }
                lse[(b * H + h) * T + i] = (float)(mx + log(l));
            }
        }
    free(s);
    return 0;
}

int nc_attention_backward(nc_context *ctx, float *dq, float *dk, float *dv, float *delta, const float *q, const float *k,
                          const float *v, const float *o, const float *dout, const float *lse, int64_t B, int64_t T,
                          int64_t H, int64_t Hkv, int64_t D, int64_t window, int accumulate) {
    if (no_work()) return 0;
    (void)ctx;
    if (!accumulate) {  // written, not added: whatever the buffers held is dropped
        memset(dq, 0, (size_t)(B * T * H * D) * sizeof(float));
        memset(dk, 0, (size_t)(B * T * Hkv * D) * sizeof(float));
        memset(dv, 0, (size_t)(B * T * Hkv * D) * sizeof(float));
    }
    double scale = 1 / sqrt((double)D);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            int64_t kh = h / (H / Hkv);
            for (int64_t i = 0; i < T; i++) {
                const float *qi = q + ((b * T + i) * H + h) * D, *doi = dout + ((b * T + i) * H + h) * D;
                const float *oi = o + ((b * T + i) * H + h) * D;
                double dl = 0;
                for (int64_t e = 0; e < D; e++) dl += (double)doi[e] * oi[e];
                delta[(b * H + h) * T + i] = (float)dl;
                int64_t lo = i - window > 0 ? i - window : 0;
                for (int64_t j = lo; j <= i; j++) {
                    const float *kj = k + ((b * T + j) * Hkv + kh) * D, *vj = v + ((b * T + j) * Hkv + kh) * D;
                    double s = 0, dp = 0;
                    for (int64_t e = 0; e < D; e++) { s += (double)qi[e] * kj[e]; dp += (double)doi[e] * vj[e]; }
                    double p = exp(s * scale - lse[(b * H + h) * T + i]), ds = p * (dp - dl) * scale;
                    for (int64_t e = 0; e < D; e++) {
                        dq[((b * T + i) * H + h) * D + e] += (float)(ds * kj[e]);
                        dk[((b * T + j) * Hkv + kh) * D + e] += (float)(ds * qi[e]);
                        dv[((b * T + j) * Hkv + kh) * D + e] += (float)(p * doi[e]);
                    }
                }
            }
        }
    return 0;
}

int nc_embedding_forward(nc_context *ctx, float *out, const float *table, const int32_t *ids, int64_t n, int64_t c) {
    if (no_work()) return 0;
    (void)ctx;
    for (int64_t i = 0; i < n; i++) memcpy(out + i * c, table + (int64_t)ids[i] * c, c * sizeof(float));
    return 0;
}

int nc_embedding_backward(nc_context *ctx, float *dtable, const float *dout, const int32_t *ids, int64_t n, int64_t c) {
    if (no_work()) return 0;
    (void)ctx;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < c; j++) dtable[(int64_t)ids[i] * c + j] += dout[i * c + j];
    return 0;
}

static double sigmoid(double x) { return 1 / (1 + exp(-x)); }

int nc_smear_forward(nc_context *ctx, float *out, float *gates, const float *x, const float *gate, const float *lambda,
                     int64_t b, int64_t t, int64_t c, int k) {
    if (no_work()) return 0;
    (void)ctx;
    for (int64_t row = 0; row < b * t; row++) {
        const float *cur = x + row * c;
        if (row % t == 0) {
            memcpy(out + row * c, cur, c * sizeof(float));
            gates[row] = 0;
            continue;
        }
        double a = 0;
        for (int j = 0; j < k; j++) a += (double)gate[j] * cur[j];
        double s = sigmoid(a), f = lambda[0] * s;
        for (int64_t j = 0; j < c; j++) out[row * c + j] = (float)(cur[j] + f * cur[j - c]);
        gates[row] = (float)s;
    }
    return 0;
}

int nc_smear_backward(nc_context *ctx, float *dx, float *dgate, float *dlambda, const float *dout, const float *x,
                      const float *gates, const float *gate, const float *lambda, int64_t b, int64_t t, int64_t c, int k) {
    if (no_work()) return 0;
    (void)ctx;
    double lam = lambda[0];
    for (int64_t row = 0; row < b * t; row++) {
        int64_t ti = row % t;
        const float *go = dout + row * c;
        double sNext = ti + 1 < t ? gates[row + 1] : 0;
        for (int64_t j = 0; j < c; j++) dx[row * c + j] += (float)(go[j] + (ti + 1 < t ? lam * sNext * go[j + c] : 0));
        if (ti == 0) continue;
        const float *prev = x + (row - 1) * c, *cur = x + row * c;
        double gp = 0;
        for (int64_t j = 0; j < c; j++) gp += (double)go[j] * prev[j];
        double s = gates[row], da = lam * gp * s * (1 - s);
        *dlambda += (float)(s * gp);
        for (int j = 0; j < k; j++) {
            dgate[j] += (float)(da * cur[j]);
            dx[row * c + j] += (float)(da * gate[j]);
        }
    }
    return 0;
}

int nc_value_embedding_forward(nc_context *ctx, void *out, float *sig, const void *v, int v_bf16, const float *ve, const void *u,
                               int u_bf16, const float *gate, int64_t n, int64_t hkv, int64_t d, int64_t c, int k) {
    if (no_work()) return 0;
    (void)ctx;
    for (int64_t r = 0; r < n * hkv; r++) {
        int64_t row = r / hkv, h = r % hkv;
        double a = 0;
        for (int j = 0; j < k; j++) a += (double)gate[h * k + j] * element(u, row * c + j, u_bf16);
        double s = sigmoid(a);
        for (int64_t j = 0; j < d; j++) set_element(out, r * d + j, (float)(element(v, r * d + j, v_bf16) + 3 * s * ve[r * d + j]), v_bf16);
        sig[r] = (float)s;
    }
    return 0;
}

int nc_value_embedding_backward(nc_context *ctx, float *dv, float *dve, float *du, float *dgate, const void *dout, int dout_bf16,
                                const float *ve, const void *u, int u_bf16, const float *gate, const float *sig, int64_t n,
                                int64_t hkv, int64_t d, int64_t c, int k) {
    if (no_work()) return 0;
    (void)ctx;
    for (int64_t r = 0; r < n * hkv; r++) {
        int64_t row = r / hkv, h = r % hkv;
        double s = sig[r], dot = 0;
        for (int64_t j = 0; j < d; j++) {
            float go = element(dout, r * d + j, dout_bf16);
            if (dv) dv[r * d + j] += go;
            if (dve) dve[r * d + j] += (float)(3 * s * go);
            dot += (double)go * ve[r * d + j];
        }
        double da = dot * 3 * s * (1 - s);
        for (int j = 0; j < k; j++) {
            if (dgate) dgate[h * k + j] += (float)(da * element(u, row * c + j, u_bf16));
            if (du) du[row * c + j] += (float)(da * gate[h * k + j]);
        }
    }
    return 0;
}

int nc_scalar_mix_forward(nc_context *ctx, float *out, const float *a, const float *b, const float *alpha, int64_t ia,
                          const float *beta, int64_t ib, int64_t n) {
    if (no_work()) return 0;
    (void)ctx;
    for (int64_t i = 0; i < n; i++) out[i] = alpha[ia] * a[i] + beta[ib] * b[i];
    return 0;
}

int nc_scalar_mix_backward(nc_context *ctx, float *da, float *db, float *dalpha, float *dbeta, const float *g,
                           const float *a, const float *b, const float *alpha, int64_t ia, const float *beta, int64_t ib,
                           int64_t n, int accumulate_a, int accumulate_b) {
    if (no_work()) return 0;
    (void)ctx;
    double pa = 0, pb = 0;
    float sa = alpha[ia], sb = beta[ib];
    for (int64_t i = 0; i < n; i++) {
        if (da) da[i] = accumulate_a ? da[i] + sa * g[i] : sa * g[i];
        if (db) db[i] = accumulate_b ? db[i] + sb * g[i] : sb * g[i];
        pa += (double)g[i] * a[i];
        pb += (double)g[i] * b[i];
    }
    if (dalpha) dalpha[ia] += (float)pa;
    if (dbeta) dbeta[ib] += (float)pb;
    return 0;
}

int nc_backout_forward(nc_context *ctx, float *out, const float *x, const float *saved, const float *lambda, int64_t n) {
    if (no_work()) return 0;
    (void)ctx;
    for (int64_t i = 0; i < n; i++) out[i] = x[i] - lambda[0] * saved[i];
    return 0;
}

int nc_backout_backward(nc_context *ctx, float *dsaved, float *dlambda, const float *g, const float *saved,
                        const float *lambda, int64_t n) {
    if (no_work()) return 0;
    (void)ctx;
    double p = 0;
    for (int64_t i = 0; i < n; i++) {
        if (dsaved) dsaved[i] -= lambda[0] * g[i];
        p += (double)g[i] * saved[i];
    }
    if (dlambda) *dlambda -= (float)p;
    return 0;
}

int nc_relu2_forward(nc_context *ctx, float *y, const float *x, int64_t n) {
    if (no_work()) return 0;
    (void)ctx;
    for (int64_t i = 0; i < n; i++) { float r = x[i] > 0 ? x[i] : 0; y[i] = r * r; }
    return 0;
}

int nc_relu2_backward(nc_context *ctx, float *dx, const float *dy, const float *x, int64_t n, int accumulate) {
    if (no_work()) return 0;
    (void)ctx;
    for (int64_t i = 0; i < n; i++) {
        float g = 2.f * (x[i] > 0 ? x[i] : 0) * dy[i];
        dx[i] = accumulate ? dx[i] + g : g;
    }
    return 0;
}

int nc_relu2_forward_bf16(nc_context *ctx, void *y, const void *x, int64_t n) {
    if (no_work()) return 0;
    (void)ctx;
    const uint16_t *xs = x;
    uint16_t *ys = y;
    for (int64_t i = 0; i < n; i++) { float v = bf16_value(xs[i]), r = v > 0 ? v : 0; ys[i] = bf16_bits(r * r); }
    return 0;
}

int nc_relu2_backward_bf16(nc_context *ctx, void *dx, const void *dy, const void *x, int64_t n) {
    if (no_work()) return 0;
    (void)ctx;
    const uint16_t *xs = x, *gs = dy;
    uint16_t *out = dx;
    for (int64_t i = 0; i < n; i++) { float v = bf16_value(xs[i]); out[i] = bf16_bits(2.f * (v > 0 ? v : 0) * bf16_value(gs[i])); }
    return 0;
}

int nc_relu2_backward_from_output_bf16(nc_context *ctx, void *dx, const void *dy, const void *y, int64_t n) {
    if (no_work()) return 0;
    (void)ctx;
    const uint16_t *ys = y, *gs = dy;
    uint16_t *out = dx;
    for (int64_t i = 0; i < n; i++) out[i] = bf16_bits(2.f * sqrtf(bf16_value(ys[i])) * bf16_value(gs[i]));
    return 0;
}

int nc_softcap_cross_entropy(nc_context *ctx, float *logits, float *losses, const int32_t *targets, const float *weights,
                             int64_t rows, int64_t vocab, int64_t ld, float softcap, float grad_scale) {
    if (no_work()) return 0;
    if (vocab > ld) return fail(ctx, "nc_softcap_cross_entropy", "vocab is larger than the row stride");
    for (int64_t r = 0; r < rows; r++) {
        float *z = logits + r * ld;
        int target = targets[r];
        double sum = 0;
        for (int64_t j = 0; j < vocab; j++) sum += exp(softcap * tanh(z[j] / softcap) - softcap);
        double lse = softcap + log(sum);
        losses[r] = target < 0 ? 0.f : (float)(lse - softcap * tanh(z[target] / softcap));
        if (grad_scale == 0) continue;
        double row_scale = (double)grad_scale * (weights ? weights[r] : 1.0);
        for (int64_t j = 0; j < ld; j++) {
            double g = 0;
            if (target >= 0 && j < vocab) {
                double t = tanh(z[j] / softcap);
                g = (exp(softcap * t - lse) - (j == target ? 1 : 0)) * (1 - t * t) * row_scale;
            }
            z[j] = (float)g;
        }
    }
    return 0;
}

int nc_softcap_cross_entropy_bf16(nc_context *ctx, void *logits, float *losses, const int32_t *targets, const float *weights,
                                  int64_t rows, int64_t vocab, int64_t ld, float softcap, float grad_scale) {
    if (no_work()) return 0;
    // the fp32 kernel on the bf16 values, the gradient rounded back to bf16
    float *z = bf16_to_float(logits, rows * ld);
    if (!z) return fail(ctx, "nc_softcap_cross_entropy_bf16", "out of host memory");
    int rc = nc_softcap_cross_entropy(ctx, z, losses, targets, weights, rows, vocab, ld, softcap, grad_scale);
    if (rc == 0 && grad_scale != 0)
        for (int64_t i = 0; i < rows * ld; i++) ((uint16_t *)logits)[i] = bf16_bits(z[i]);
    free(z);
    return rc;
}

int nc_axpby(nc_context *ctx, float *y, const float *x, float a, const float *scale, float b, int64_t n) {
    if (no_work()) return 0;
    (void)ctx;
    float s = scale ? a * scale[0] : a;
    for (int64_t i = 0; i < n; i++) y[i] = b == 0.f ? s * x[i] : s * x[i] + b * y[i];
    return 0;
}

int nc_softcap(nc_context *ctx, float *x, int64_t n, float cap) {
    if (no_work()) return 0;
    (void)ctx;
    for (int64_t i = 0; i < n; i++) x[i] = cap * tanhf(x[i] / cap);
    return 0;
}

int nc_dot(nc_context *ctx, float *out, const float *x, const float *w, int64_t n, int accumulate) {
    if (no_work()) { out[0] = 0; return 0; }
    (void)ctx;
    double sum = accumulate ? out[0] : 0;
    for (int64_t i = 0; i < n; i++) sum += (double)x[i] * (w ? (double)w[i] : 1.0);
    out[0] = (float)sum;
    return 0;
}

// the cache's element i: fp32, or bf16 bits
static float cache_element(const void *cache, int64_t i, int bf16) {
    return bf16 ? bf16_value(((const uint16_t *)cache)[i]) : ((const float *)cache)[i];
}

int nc_attention_backend(nc_context *ctx, char *name, int name_len) {
    (void)ctx;
    if (name && name_len > 0) snprintf(name, (size_t)name_len, "host emulation of the WMMA kernels");
    return 0;
}

int nc_attention_select(nc_context *ctx, int cudnn) {
    return cudnn ? fail(ctx, "nc_attention_select", "no cuDNN in the host emulation") : 0;
}

int nc_kv_append(nc_context *ctx, void *cache, const float *src, const int32_t *rows, const int32_t *starts, int64_t b,
                 int64_t t, int64_t hkv, int64_t d, int64_t capacity, int bf16) {
    if (no_work()) return 0;
    (void)ctx;
    for (int64_t bi = 0; bi < b; bi++)
        for (int64_t ti = 0; ti < t; ti++)
            for (int64_t h = 0; h < hkv; h++)
                for (int64_t c = 0; c < d; c++) {
                    int64_t dst = ((rows[bi] * hkv + h) * capacity + starts[bi] + ti) * d + c;
                    float v = src[((bi * t + ti) * hkv + h) * d + c];
                    if (bf16) ((uint16_t *)cache)[dst] = bf16_bits(v);
                    else ((float *)cache)[dst] = v;
                }
    return 0;
}

int nc_cached_attention(nc_context *ctx, float *out, const float *q, const void *k_cache, const void *v_cache,
                        const int32_t *rows, const int32_t *starts, int64_t b, int64_t t, int64_t h, int64_t hkv, int64_t d,
                        int64_t capacity, int64_t window, int bf16) {
    if (no_work()) return 0;
    if (hkv <= 0 || h % hkv != 0) return fail(ctx, "nc_cached_attention", "the query heads are not a multiple of the KV heads");
    double *scores = (double *)malloc((size_t)capacity * sizeof(double));
    if (!scores) return fail(ctx, "nc_cached_attention", "out of host memory");
    double scale = 1.0 / sqrt((double)d);
    for (int64_t bi = 0; bi < b; bi++)
        for (int64_t ti = 0; ti < t; ti++)
            for (int64_t hh = 0; hh < h; hh++) {
                int64_t kh = hh / (h / hkv), p = starts[bi] + ti, lo = p - window > 0 ? p - window : 0;
                const float *qi = q + ((bi * t + ti) * h + hh) * d;
                int64_t base = (rows[bi] * hkv + kh) * capacity * d;
                double mx = -INFINITY, sum = 0;
                for (int64_t j = lo; j <= p; j++) {
                    double s = 0;
                    for (int64_t c = 0; c < d; c++) s += (double)qi[c] * cache_element(k_cache, base + j * d + c, bf16);
                    scores[j] = s * scale;
                    if (scores[j] > mx) mx = scores[j];
                }
                for (int64_t j = lo; j <= p; j++) { scores[j] = exp(scores[j] - mx); sum += scores[j]; }
                float *oi = out + ((bi * t + ti) * h + hh) * d;
                for (int64_t c = 0; c < d; c++) {
                    double acc = 0;
                    for (int64_t j = lo; j <= p; j++) acc += scores[j] * cache_element(v_cache, base + j * d + c, bf16);
                    oi[c] = (float)(acc / sum);
                }
            }
    free(scores);
    return 0;
}

int nc_adamw_step(nc_context *ctx, float *p, const float *g, float *m, float *v, int64_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int step) {
    if (no_work()) return 0;
    if (step < 1) return fail(ctx, "nc_adamw_step", "step counts from 1");
    float bias1 = 1.f - powf(beta1, (float)step), bias2 = 1.f - powf(beta2, (float)step);
    float decay = 1.f - lr * weight_decay, step_size = lr / bias1;
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i], pi = p[i] * decay;
        float mi = m[i] + (1.f - beta1) * (gi - m[i]);
        float vi = v[i] + (1.f - beta2) * (gi * gi - v[i]);
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * mi / (sqrtf(vi / bias2) + eps);
    }
    return 0;
}

static const double polar_express[5][3] = {
    {8.156554524902461, -22.48329292557795, 15.878769915207462},
    {4.042929935166739, -2.808917465908714, 0.5000178451051316},
    {3.8916678022926607, -2.772484153217685, 0.5060648178503393},
    {3.285753657755655, -2.3681294933425376, 0.46449024233003106},
    {2.3465413258596377, -1.7097828382687081, 0.42323551169305323},
};

static double frob(const float *x, int64_t size) {
    double s = 0;
    for (int64_t i = 0; i < size; i++) s += (double)x[i] * x[i];
    return sqrt(s);
}

// the steps and their order as muon.cu's nc_muon_step, one matrix at a time
int nc_muon_step(nc_context *ctx, float *params, const float *grads, float *momentum, float *second, int64_t K,
                 int64_t rows, int64_t cols, float lr, float weight_decay, float mu, float beta2, int ns_steps, int bf16) {
    if (no_work()) return 0;
    const int64_t size = rows * cols, small = rows < cols ? rows : cols;
    const int per_row = rows >= cols;
    const int64_t m = per_row ? rows : cols, len = per_row ? cols : rows;
    float *x = (float *)malloc(sizeof(float) * size), *xn = (float *)malloc(sizeof(float) * size);
    float *a = (float *)malloc(sizeof(float) * small * small), *a2 = (float *)malloc(sizeof(float) * small * small);
    double *st = (double *)malloc(sizeof(double) * m);
    if (!x || !xn || !a || !a2 || !st) return fail(ctx, "nc_muon_step", "out of host memory");
    for (int64_t kk = 0; kk < K; kk++) {
        float *p = params + kk * size, *mom = momentum + kk * size, *sec = second + kk * m;
        const float *g = grads ? grads + kk * size : NULL;
        for (int64_t i = 0; i < size; i++) {  // Nesterov momentum
            float gr = g ? g[i] : 0.f, mi = mom[i] + (1.f - mu) * (gr - mom[i]);
            mom[i] = mi;
            x[i] = gr + mu * (mi - gr);
        }
        double norm = frob(x, size);  // MuonEq
        for (int64_t r = 0; r < rows; r++) {
            double rn = frob(x + r * cols, cols);
            double f = norm / sqrt((double)rows) / (rn > 1e-6 ? rn : 1e-6);
            for (int64_t j = 0; j < cols; j++) x[r * cols + j] = (float)(x[r * cols + j] * f);
        }
        norm = frob(x, size);
        for (int64_t i = 0; i < size; i++) x[i] = (float)(x[i] / (norm * 1.01 + 1e-6));
        for (int it = 0; it < ns_steps; it++) {  // Polar Express
            const double *c3 = polar_express[it < 5 ? it : 4];
            if (rows > cols) nc_matmul(ctx, a, x, x, cols, cols, rows, 1, 0, 1.f, 0.f, bf16);
            else nc_matmul(ctx, a, x, x, rows, rows, cols, 0, 1, 1.f, 0.f, bf16);
            nc_matmul(ctx, a2, a, a, small, small, small, 0, 0, (float)c3[2], 0.f, bf16);
            for (int64_t i = 0; i < small * small; i++) a2[i] += (float)c3[1] * a[i];
            memcpy(xn, x, sizeof(float) * size);
            if (rows > cols) nc_matmul(ctx, xn, x, a2, rows, cols, cols, 0, 0, 1.f, (float)c3[0], bf16);
            else nc_matmul(ctx, xn, a2, x, rows, cols, rows, 0, 0, 1.f, (float)c3[0], bf16);
            float *t = x; x = xn; xn = t;
        }
        norm = frob(x, size);  // Muon+
        double f = sqrt((double)small) / (norm > 1e-6 ? norm : 1e-6);
        for (int64_t i = 0; i < size; i++) x[i] = (float)(x[i] * f);
        double vn = 0, vnew = 0;  // NorMuon
        for (int64_t i = 0; i < m; i++) {
            double s = 0;
            for (int64_t j = 0; j < len; j++) {
                double v = per_row ? x[i * cols + j] : x[j * cols + i];
                s += v * v;
            }
            double v = s / len;
            vn += v * len;
            float sn = sec[i] + (1.f - beta2) * ((float)v - sec[i]);
            sec[i] = sn;
            double step = 1 / sqrt(sn > 1e-10f ? sn : 1e-10f);
            vnew += v * len * step * step;
            st[i] = step;
        }
        double ratio = sqrt(vn) / (sqrt(vnew) > 1e-10 ? sqrt(vnew) : 1e-10);
        float lr_eff = lr * sqrtf(fmaxf(1.f, (float)rows / (float)cols));
        for (int64_t i = 0; i < size; i++) {  // cautious weight decay and the update
            int64_t r = i / cols, c = i % cols;
            float u = (float)(x[i] * (per_row ? st[r] : st[c]) * ratio), pi = p[i];
            float decay = u * pi >= 0.f ? lr_eff * weight_decay * pi : 0.f;
            p[i] = pi - (lr_eff * u + decay);
        }
    }
    free(x); free(xn); free(a); free(a2); free(st);
    return 0;
}

// the tensor-core attention's contract: the exact one's over the bf16 operands (widened), its output rounded to bf16
// (the device's own rounding inside the kernel, of P before P V, is its business)
int nc_attention_forward_bf16(nc_context *ctx, void *o, float *lse, const void *q, const void *k, const void *v,
                              int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D, int64_t window) {
    if (no_work()) return 0;
    int64_t nq = B * T * H * D, nk = B * T * Hkv * D;
    float *qf = bf16_to_float(q, nq), *kf = bf16_to_float(k, nk), *vf = bf16_to_float(v, nk), *of = malloc(sizeof(float) * (size_t)(nq ? nq : 1));
    int rc = qf && kf && vf && of ? nc_attention_forward(ctx, of, lse, qf, kf, vf, B, T, H, Hkv, D, window)
                                  : fail(ctx, "nc_attention_forward_bf16", "out of host memory");
    for (int64_t i = 0; rc == 0 && i < nq; i++) ((uint16_t *)o)[i] = bf16_bits(of[i]);
    free(qf); free(kf); free(vf); free(of);
    return rc;
}
int nc_attention_backward_bf16(nc_context *ctx, void *dq, void *dk, void *dv, int grads_bf16, float *delta, const void *q,
                               const void *k, const void *v, const void *o, const void *dout, int dout_bf16, const float *lse,
                               int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D, int64_t window, int accumulate) {
    if (no_work()) return 0;
    if (grads_bf16 && accumulate) return fail(ctx, "nc_attention_backward_bf16", "bf16 gradients are written, not added to");
    int64_t nq = B * T * H * D, nk = B * T * Hkv * D;
    float *qf = bf16_to_float(q, nq), *kf = bf16_to_float(k, nk), *vf = bf16_to_float(v, nk), *of = bf16_to_float(o, nq);
    float *gof = dout_bf16 ? bf16_to_float(dout, nq) : NULL;
    // bf16 gradients: the fp32 ones into scratch, rounded into place
    float *dqf = grads_bf16 ? malloc(sizeof(float) * (size_t)(nq ? nq : 1)) : dq, *dkf = grads_bf16 ? malloc(sizeof(float) * (size_t)(nk ? nk : 1)) : dk;
    float *dvf = grads_bf16 ? malloc(sizeof(float) * (size_t)(nk ? nk : 1)) : dv;
    int rc = qf && kf && vf && of && (!dout_bf16 || gof) && dqf && dkf && dvf
                 ? nc_attention_backward(ctx, dqf, dkf, dvf, delta, qf, kf, vf, of, dout_bf16 ? gof : dout, lse, B, T, H, Hkv, D, window, accumulate)
                 : fail(ctx, "nc_attention_backward_bf16", "out of host memory");
    if (grads_bf16 && rc == 0) {
        for (int64_t i = 0; i < nq; i++) ((uint16_t *)dq)[i] = bf16_bits(dqf[i]);
        for (int64_t i = 0; i < nk; i++) { ((uint16_t *)dk)[i] = bf16_bits(dkf[i]); ((uint16_t *)dv)[i] = bf16_bits(dvf[i]); }
    }
    if (grads_bf16) { free(dqf); free(dkf); free(dvf); }
    free(qf); free(kf); free(vf); free(of); free(gof);
    return rc;
}

// NCCL on the host: one rank, so every collective is the identity (or a copy); what it checks is that the Swift side
// calls them with buffers of the right sizes, in one order, and that the optimizer's sharded path gives the same step.
// More ranks need GPUs: nc_nccl_init refuses them.
static int g_nccl_ready = 0;
int nc_nccl_version(nc_context *ctx, int *version) {
    (void)ctx;
    *version = 0;
    return 0;
}
int nc_nccl_unique_id(nc_context *ctx, char *id, int id_len) {
    if (id_len < 128) return fail(ctx, "nc_nccl_unique_id", "the id takes 128 bytes");
    memset(id, 0x5a, 128);
    return 0;
}
int nc_nccl_init(nc_context *ctx, const char *id, int nranks, int rank) {
    (void)id;
    if (nranks != 1 || rank != 0) return fail(ctx, "ncclCommInitRank", "the host emulation has one rank (NCCL between GPUs needs GPUs)");
    g_nccl_ready = 1;
    return 0;
}
static int nccl_ready(nc_context *ctx, const char *what) {
    return g_nccl_ready ? 0 : fail(ctx, what, "no NCCL communicator (nc_nccl_init first)");
}
int nc_nccl_all_reduce(nc_context *ctx, float *buf, int64_t count) {
    (void)buf; (void)count;
    return nccl_ready(ctx, "ncclAllReduce");
}
int nc_nccl_reduce_scatter(nc_context *ctx, const float *send, float *recv, int64_t count_per_rank) {
    if (nccl_ready(ctx, "ncclReduceScatter")) return 1;
    if (recv != send) memmove(recv, send, (size_t)count_per_rank * 4);
    return 0;
}
int nc_nccl_reduce(nc_context *ctx, const float *send, float *recv, int64_t count, int root) {
    if (nccl_ready(ctx, "ncclReduce")) return 1;
    if (root != 0) return fail(ctx, "ncclReduce", "root past the one rank");
    if (recv != send) memmove(recv, send, (size_t)count * 4);
    return 0;
}
int nc_nccl_all_gather(nc_context *ctx, float *buf, int64_t count_per_rank) {
    (void)buf; (void)count_per_rank;
    return nccl_ready(ctx, "ncclAllGather");
}
int nc_nccl_wait(nc_context *ctx) { (void)ctx; return 0; }
int nc_nccl_check(nc_context *ctx, double timeout_seconds, int *failed, char *reason, int reason_len) {
    (void)ctx; (void)timeout_seconds;
    *failed = 0;
    if (reason_len > 0) reason[0] = 0;
    return 0;
}
int nc_nccl_abort(nc_context *ctx) {
    (void)ctx;
    g_nccl_ready = 0;
    return 0;
}
