// Checks every op of libnanochat_cuda against a float64 reference on the host, on fresh random inputs, with
// NaN-poisoned outputs (an unwritten element fails), then times the matrix products at the model's shapes.
// Prints one line per check and ends with "N passed, N failed". Run by scripts/gpu-check on the GPU machine.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include <cuda_runtime.h>

#include "nanochat_cuda.h"

static nc_context *ctx;
static int passed = 0, failed = 0;
static unsigned long long rng_state = 0x9E3779B97F4A7C15ull;

static double urand() {  // [0, 1)
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}
static std::vector<float> randn(size_t n, double scale = 1) {
    std::vector<float> v(n);
    for (auto &x : v) x = (float)(scale * sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()));
    return v;
}

#define NC(call)                                                                          \
    do {                                                                                  \
        if ((call) != 0) { fprintf(stderr, "%s failed: %s\n", #call, nc_error_string(ctx)); exit(1); } \
    } while (0)

struct Dev {  // a device buffer filled from (or poisoned like) a host vector
    void *p = nullptr;
    size_t bytes = 0;
    template <class T> Dev(const std::vector<T> &h) : bytes(h.size() * sizeof(T)) {
        NC(nc_malloc(ctx, &p, bytes));
        NC(nc_copy_to_device(ctx, p, h.data(), bytes));
    }
    ~Dev() { nc_free(ctx, p); }
    float *f() { return (float *)p; }
    template <class T> std::vector<T> get() {
        std::vector<T> h(bytes / sizeof(T));
        NC(nc_copy_to_host(ctx, h.data(), p, bytes));
        return h;
    }
};
static std::vector<float> nans(size_t n) { return std::vector<float>(n, NAN); }

// ||got - ref|| / ||ref||; NaN (an unwritten or poisoned element) fails.
static void check(const char *name, const std::vector<float> &got, const std::vector<double> &ref, double tol) {
    double num = 0, den = 0;
    bool nan = false;
    for (size_t i = 0; i < ref.size(); i++) {
        if (!isfinite(got[i])) nan = true;
        num += (got[i] - ref[i]) * (got[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    double err = den > 0 ? sqrt(num / den) : sqrt(num);
    bool ok = !nan && err <= tol;
    printf("%-46s rel err %.2e (tol %.0e) %s\n", name, err, tol, ok ? "ok" : (nan ? "FAIL (NaN)" : "FAIL"));
    ok ? passed++ : failed++;
}

// bf16 bits of x, rounded to nearest even, and back (bf16 operands, the bf16 KV cache's elements)
static uint16_t to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}
static float from_bf16(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}
static float round_bf16(float x) { return from_bf16(to_bf16(x)); }
static std::vector<uint16_t> bf16_bits_of(const std::vector<float> &v) {
    std::vector<uint16_t> out(v.size());
    for (size_t i = 0; i < v.size(); i++) out[i] = to_bf16(v[i]);
    return out;
}
static std::vector<float> widened(const std::vector<uint16_t> &v) {
    std::vector<float> out(v.size());
    for (size_t i = 0; i < v.size(); i++) out[i] = from_bf16(v[i]);
    return out;
}
static std::vector<uint16_t> bf16_nans(size_t n) { return std::vector<uint16_t>(n, 0x7FC0); }

// C = alpha op(A) op(B) + beta C0 in double, the inputs rounded to bf16 first when `bf16`
static std::vector<double> matmul_reference(const std::vector<float> &a, const std::vector<float> &b, const std::vector<float> &c0,
                                            int64_t m, int64_t n, int64_t k, int ta, int tb, float alpha, float beta, int bf16) {
    std::vector<double> ref(m * n);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t l = 0; l < k; l++) {
                float av = ta ? a[l * m + i] : a[i * k + l], bv = tb ? b[j * k + l] : b[l * n + j];
                if (bf16) { av = round_bf16(av); bv = round_bf16(bv); }
                s += (double)av * bv;
            }
            ref[i * n + j] = alpha * s + beta * (double)c0[i * n + j];
        }
    return ref;
}

static void check_matmul(int64_t m, int64_t n, int64_t k, int ta, int tb, float alpha, float beta, int bf16) {
    auto a = randn(m * k), b = randn(k * n), c0 = randn(m * n);
    auto ref = matmul_reference(a, b, c0, m, n, k, ta, tb, alpha, beta, bf16);
    Dev da(a), db(b), dc(beta == 0 ? nans(m * n) : c0);
    NC(nc_matmul(ctx, dc.f(), da.f(), db.f(), m, n, k, ta, tb, alpha, beta, bf16));
    char name[128];
    snprintf(name, sizeof name, "matmul %s %lldx%lldx%lld%s%s a%.1f b%.1f", bf16 ? "bf16" : "fp32", (long long)m,
             (long long)n, (long long)k, ta ? " tA" : "", tb ? " tB" : "", alpha, beta);
    check(name, dc.get<float>(), ref, bf16 ? 1e-5 : 1e-5);  // bf16: the reference rounds the same inputs
}

// The product with a weight already in bf16 (nc_to_bf16, made once per optimizer step) and the activation rounded
// in the call: the same values as rounding both per call.
static void check_matmul_mixed(int64_t m, int64_t n, int64_t k, int ta, int tb, float beta) {
    auto a = randn(m * k), b = randn(k * n), c0 = randn(m * n);
    auto ref = matmul_reference(a, b, c0, m, n, k, ta, tb, 1, beta, 1);
    Dev da(a), db(b), dc(beta == 0 ? nans(m * n) : c0), db16(std::vector<uint16_t>(k * n, 0xFFFF));
    NC(nc_to_bf16(ctx, db16.p, db.f(), k * n));
    std::vector<double> rounded(k * n);
    for (int64_t i = 0; i < k * n; i++) rounded[i] = round_bf16(b[i]);
    std::vector<float> back;
    for (auto x : db16.get<uint16_t>()) back.push_back(from_bf16(x));
    check("to_bf16 (nearest even)", back, rounded, 0);
    Dev dwide(nans(k * n));
    NC(nc_from_bf16(ctx, dwide.f(), db16.p, k * n));
    check("from_bf16 (exact)", dwide.get<float>(), rounded, 0);
    NC(nc_matmul_mixed(ctx, dc.f(), da.p, 0, db16.p, 1, m, n, k, ta, tb, 1, beta));
    char name[128];
    snprintf(name, sizeof name, "matmul with a bf16 weight %lldx%lldx%lld%s%s b%.1f", (long long)m, (long long)n, (long long)k,
             ta ? " tA" : "", tb ? " tB" : "", beta);
    check(name, dc.get<float>(), ref, 1e-5);
}

// The product written in bf16 (the bf16 loss's logits): the fp32 result of the bf16 operands, rounded once.
static void check_matmul_bf16_out(int64_t m, int64_t n, int64_t k, int ta, int tb) {
    auto a = randn(m * k), b = randn(k * n);
    std::vector<float> zero(m * n, 0.f);
    auto ref = matmul_reference(a, b, zero, m, n, k, ta, tb, 1, 0, 1);
    for (auto &x : ref) x = round_bf16((float)x);
    Dev da(a), db(b), dc(std::vector<uint16_t>(m * n, 0xFFFF));
    NC(nc_matmul_bf16_out(ctx, dc.p, da.p, 0, db.p, 0, m, n, k, ta, tb));
    std::vector<float> got;
    for (auto x : dc.get<uint16_t>()) got.push_back(from_bf16(x));
    char name[128];
    snprintf(name, sizeof name, "matmul bf16 out %lldx%lldx%lld%s%s", (long long)m, (long long)n, (long long)k, ta ? " tA" : "",
             tb ? " tB" : "");
    check(name, got, ref, 4e-3);  // one bf16 rounding of each result (2^-9 relative at most)
}

static void check_rmsnorm(int64_t rows, int64_t cols) {
    auto x = randn(rows * cols, 3), dy = randn(rows * cols), acc = randn(rows * cols);
    std::vector<double> y(rows * cols), dx(rows * cols), dxa(rows * cols);
    std::vector<double> rstd(rows);
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0;
        for (int64_t j = 0; j < cols; j++) ss += (double)x[r * cols + j] * x[r * cols + j];
        double rs = 1 / sqrt(ss / cols + 1.1920928955078125e-07);
        rstd[r] = rs;
        double dot = 0;
        for (int64_t j = 0; j < cols; j++) { y[r * cols + j] = x[r * cols + j] * rs; dot += dy[r * cols + j] * y[r * cols + j]; }
        for (int64_t j = 0; j < cols; j++) {
            dx[r * cols + j] = rs * (dy[r * cols + j] - y[r * cols + j] * dot / cols);
            dxa[r * cols + j] = acc[r * cols + j] + dx[r * cols + j];
        }
    }
    Dev dxin(x), dyv(nans(rows * cols)), drs(nans(rows)), dg(dy), ddx(nans(rows * cols)), dacc(acc);
    NC(nc_rmsnorm_forward(ctx, dyv.f(), 0, drs.f(), dxin.f(), rows, cols));
    char name[96];
    snprintf(name, sizeof name, "rmsnorm forward %lldx%lld", (long long)rows, (long long)cols);
    check(name, dyv.get<float>(), y, 1e-6);
    NC(nc_rmsnorm_backward(ctx, ddx.f(), dg.f(), dyv.f(), 0, drs.f(), rows, cols, 0));
    snprintf(name, sizeof name, "rmsnorm backward %lldx%lld", (long long)rows, (long long)cols);
    check(name, ddx.get<float>(), dx, 1e-5);
    NC(nc_rmsnorm_backward(ctx, dacc.f(), dg.f(), dyv.f(), 0, drs.f(), rows, cols, 1));
    check("rmsnorm backward, accumulating", dacc.get<float>(), dxa, 1e-5);
    // the bf16 output (the branches' inputs): y rounded once; the backward reads those bf16 values (its reference too)
    {
        Dev dy16(bf16_nans(rows * cols)), drs16(nans(rows)), ddx16(nans(rows * cols));
        NC(nc_rmsnorm_forward(ctx, dy16.p, 1, drs16.f(), dxin.f(), rows, cols));
        auto y16 = widened(dy16.get<uint16_t>());
        snprintf(name, sizeof name, "rmsnorm forward into bf16 %lldx%lld", (long long)rows, (long long)cols);
        check(name, y16, y, 4e-3);
        std::vector<double> dx16(rows * cols);
        for (int64_t r = 0; r < rows; r++) {
            double dot = 0;
            for (int64_t j = 0; j < cols; j++) dot += (double)dy[r * cols + j] * y16[r * cols + j];
            for (int64_t j = 0; j < cols; j++) dx16[r * cols + j] = rstd[r] * (dy[r * cols + j] - y16[r * cols + j] * dot / cols);
        }
        NC(nc_rmsnorm_backward(ctx, ddx16.f(), dg.f(), dy16.p, 1, drs16.f(), rows, cols, 0));
        snprintf(name, sizeof name, "rmsnorm backward from bf16 %lldx%lld", (long long)rows, (long long)cols);
        check(name, ddx16.get<float>(), dx16, 1e-5);
    }
    // the scalar mix and its norm in one pass: mixed = alpha[1] x + beta[2] acc, then its RMSNorm
    std::vector<float> alpha = {0.3f, 0.8f, -1.f}, beta = {2.f, 0.5f, 0.25f};
    std::vector<double> mixed(rows * cols), ym(rows * cols);
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0;
        for (int64_t j = 0; j < cols; j++) {
            mixed[r * cols + j] = (double)alpha[1] * x[r * cols + j] + (double)beta[2] * acc[r * cols + j];
            ss += mixed[r * cols + j] * mixed[r * cols + j];
        }
        double rs = 1 / sqrt(ss / cols + 1.1920928955078125e-07);
        for (int64_t j = 0; j < cols; j++) ym[r * cols + j] = mixed[r * cols + j] * rs;
    }
    Dev dacc2(acc), dal(alpha), dbe(beta), dmix(nans(rows * cols)), dym(nans(rows * cols)), drm(nans(rows));
    NC(nc_mix_rmsnorm_forward(ctx, dmix.f(), dym.f(), 0, drm.f(), dxin.f(), dacc2.f(), dal.f(), 1, dbe.f(), 2, rows, cols));
    snprintf(name, sizeof name, "scalar mix + rmsnorm %lldx%lld: the mix", (long long)rows, (long long)cols);
    check(name, dmix.get<float>(), mixed, 1e-6);
    snprintf(name, sizeof name, "scalar mix + rmsnorm %lldx%lld: the norm", (long long)rows, (long long)cols);
    check(name, dym.get<float>(), ym, 1e-6);
    Dev dmix16(nans(rows * cols)), dym16(bf16_nans(rows * cols)), drm16(nans(rows));
    NC(nc_mix_rmsnorm_forward(ctx, dmix16.f(), dym16.p, 1, drm16.f(), dxin.f(), dacc2.f(), dal.f(), 1, dbe.f(), 2, rows, cols));
    snprintf(name, sizeof name, "scalar mix + rmsnorm %lldx%lld: the norm in bf16", (long long)rows, (long long)cols);
    check(name, widened(dym16.get<uint16_t>()), ym, 4e-3);
}

static void check_rotary(int64_t b, int64_t t, int64_t h, int64_t d, int64_t offset) {
    int64_t half = d / 2, positions = offset + t + 3, n = b * t * h * d;
    std::vector<float> cs(positions * half), sn(positions * half);
    for (int64_t p = 0; p < positions; p++)
        for (int64_t j = 0; j < half; j++) {
            double f = p / pow(100000.0, 2.0 * j / d);
            cs[p * half + j] = (float)cos(f);
            sn[p * half + j] = (float)sin(f);
        }
    const float gain = 1.2f;
    auto x = randn(n), dy = randn(n);
    std::vector<double> y(n), dx(n);
    for (int64_t r = 0; r < b * t * h; r++) {
        int64_t pos = offset + (r / h) % t;
        std::vector<double> yy(d);
        double ss = 0;
        for (int64_t j = 0; j < half; j++) {
            double x1 = x[r * d + j], x2 = x[r * d + j + half], c = cs[pos * half + j], s = sn[pos * half + j];
            yy[j] = x1 * c + x2 * s;
            yy[j + half] = -x1 * s + x2 * c;
            ss += yy[j] * yy[j] + yy[j + half] * yy[j + half];
        }
        double inv = 1 / sqrt(ss / d + 1.1920928955078125e-07), dot = 0;
        for (int64_t j = 0; j < d; j++) { y[r * d + j] = yy[j] * inv * gain; dot += dy[r * d + j] * yy[j] * inv; }
        // out = gain * yhat: d yhat = gain * dy; d y = inv * (gain dy - yhat * mean(gain dy . yhat))
        std::vector<double> dyy(d);
        for (int64_t j = 0; j < d; j++) dyy[j] = inv * (gain * dy[r * d + j] - yy[j] * inv * gain * dot / d);
        for (int64_t j = 0; j < half; j++) {
            double c = cs[pos * half + j], s = sn[pos * half + j];
            dx[r * d + j] = dyy[j] * c - dyy[j + half] * s;
            dx[r * d + j + half] = dyy[j] * s + dyy[j + half] * c;
        }
    }
    Dev dxin(x), dc(cs), ds(sn), dout(nans(n)), drs(nans(b * t * h)), dg(dy), ddx(nans(n));
    NC(nc_rotary_norm_forward(ctx, dout.f(), drs.f(), dxin.f(), dc.f(), ds.f(), b, t, h, d, offset, gain));
    char name[96];
    snprintf(name, sizeof name, "rotary+norm forward b%lld t%lld h%lld d%lld +%lld", (long long)b, (long long)t,
             (long long)h, (long long)d, (long long)offset);
    check(name, dout.get<float>(), y, 1e-5);
    NC(nc_rotary_norm_backward(ctx, ddx.f(), dg.f(), dout.f(), drs.f(), dc.f(), ds.f(), b, t, h, d, offset, gain, 0));
    snprintf(name, sizeof name, "rotary+norm backward b%lld t%lld h%lld d%lld", (long long)b, (long long)t,
             (long long)h, (long long)d);
    check(name, ddx.get<float>(), dx, 1e-5);
    // queries and keys (fewer heads: GQA) in one launch = each alone, bit for bit
    int64_t hk = h > 1 ? h - 1 : 1, nk = b * t * hk * d;
    auto k = randn(nk);
    Dev dk(k), dkout(nans(nk)), dkrs(nans(b * t * hk)), dqq(nans(n)), dqrs(nans(b * t * h)), dkk(nans(nk)), dkrs2(nans(b * t * hk));
    NC(nc_rotary_norm_forward(ctx, dkout.f(), dkrs.f(), dk.f(), dc.f(), ds.f(), b, t, hk, d, offset, gain));
    NC(nc_rotary_norm_qk_forward(ctx, dqq.f(), dqrs.f(), dxin.f(), h, dkk.f(), dkrs2.f(), dk.f(), hk, dc.f(), ds.f(), b, t, d, offset, gain, 0));
    auto as_double = [](const std::vector<float> &v) { return std::vector<double>(v.begin(), v.end()); };
    const char *parts[4] = {"q", "k", "q's rstd", "k's rstd"};
    std::vector<float> got[4] = {dqq.get<float>(), dkk.get<float>(), dqrs.get<float>(), dkrs2.get<float>()};
    std::vector<float> alone[4] = {dout.get<float>(), dkout.get<float>(), drs.get<float>(), dkrs.get<float>()};
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "rotary+norm q and k in one launch: %s (hq %lld, hk %lld)", parts[i], (long long)h, (long long)hk);
        check(name, got[i], as_double(alone[i]), 0);
    }
    // in bf16 (the training path: the products write q and k in bf16, attention reads the outputs in bf16): each output
    // the fp32 launch's on the same bf16 inputs (as floats), rounded once
    auto xb = bf16_bits_of(x), kb = bf16_bits_of(k);
    Dev dxb(xb), dkb(kb), dxbf(widened(xb)), dkbf(widened(kb)), dqf(nans(n)), dkf(nans(nk)), dqrsf(nans(b * t * h)), dkrsf(nans(b * t * hk));
    Dev dq16(bf16_nans(n)), dk16(bf16_nans(nk)), dqrs16(nans(b * t * h)), dkrs16(nans(b * t * hk));
    NC(nc_rotary_norm_qk_forward(ctx, dqf.f(), dqrsf.f(), dxbf.f(), h, dkf.f(), dkrsf.f(), dkbf.f(), hk, dc.f(), ds.f(), b, t, d, offset, gain, 0));
    NC(nc_rotary_norm_qk_forward(ctx, dq16.p, dqrs16.f(), dxb.p, h, dk16.p, dkrs16.f(), dkb.p, hk, dc.f(), ds.f(), b, t, d, offset, gain, 1));
    auto q16 = widened(dq16.get<uint16_t>());
    auto rounded_of = [](const std::vector<float> &v) { std::vector<double> r; for (float x : v) r.push_back(round_bf16(x)); return r; };
    snprintf(name, sizeof name, "rotary+norm q and k in bf16: q (hq %lld)", (long long)h);
    check(name, q16, rounded_of(dqf.get<float>()), 1e-4);
    snprintf(name, sizeof name, "rotary+norm q and k in bf16: k (hk %lld)", (long long)hk);
    check(name, widened(dk16.get<uint16_t>()), rounded_of(dkf.get<float>()), 1e-4);
    snprintf(name, sizeof name, "rotary+norm q and k in bf16: q against float64");
    check(name, q16, y, 1e-2);
    snprintf(name, sizeof name, "rotary+norm q and k in bf16: q's rstd");
    check(name, dqrs16.get<float>(), as_double(dqrsf.get<float>()), 0);
    // the fp32 backward over the bf16 q as floats: the reference of the bf16-rows backward below, which reads q in bf16
    Dev dq16f(q16), ddxf(nans(n));
    NC(nc_rotary_norm_backward(ctx, ddxf.f(), dg.f(), dq16f.f(), dqrs16.f(), dc.f(), ds.f(), b, t, h, d, offset, gain, 0));
    // into bf16 rows of a wider matrix (q's block of the projections' joint gradient, at column 5 of rows of h*d + 11):
    // the fp32 backward's values rounded once, in place; the columns around the block untouched
    {
        int64_t ld = h * d + 11, col = 5;
        Dev djoint(bf16_nans(b * t * ld));
        NC(nc_rotary_norm_backward_bf16_rows(ctx, (uint16_t *)djoint.p + col, ld, dg.f(), 0, dq16.p, 1, dqrs16.f(), dc.f(), ds.f(), b, t, h,
                                             d, offset, gain));
        auto joint = djoint.get<uint16_t>();
        auto fp32 = ddxf.get<float>();
        std::vector<float> block;
        std::vector<double> ref;
        bool untouched = true;
        for (int64_t r = 0; r < b * t; r++)
            for (int64_t c2 = 0; c2 < ld; c2++) {
                bool inside = c2 >= col && c2 < col + h * d;
                if (inside) { block.push_back(from_bf16(joint[r * ld + c2])); ref.push_back(round_bf16(fp32[r * h * d + c2 - col])); }
                else if (joint[r * ld + c2] != 0x7FC0) untouched = false;
            }
        snprintf(name, sizeof name, "rotary+norm backward into bf16 rows (ld %lld)", (long long)ld);
        check(name, block, ref, 1e-6);
        printf("%-46s %s\n", "rotary+norm backward rows: outside untouched", untouched ? "ok" : "FAIL");
        untouched ? passed++ : failed++;
        // v's gradient beside them (nc_to_bf16_rows), then a block of zeros
        auto src = randn(b * t * 3);
        Dev dsrc(src);
        NC(nc_to_bf16_rows(ctx, djoint.p, ld, dsrc.f(), 0, b * t, 3));
        NC(nc_to_bf16_rows(ctx, (uint16_t *)djoint.p + col + h * d, ld, nullptr, 0, b * t, 2));
        joint = djoint.get<uint16_t>();
        std::vector<float> vals, zeros;
        std::vector<double> vref, zref;
        for (int64_t r = 0; r < b * t; r++) {
            for (int64_t c2 = 0; c2 < 3; c2++) { vals.push_back(from_bf16(joint[r * ld + c2])); vref.push_back(round_bf16(src[r * 3 + c2])); }
            for (int64_t c2 = 0; c2 < 2; c2++) { zeros.push_back(from_bf16(joint[r * ld + col + h * d + c2])); zref.push_back(0); }
        }
        check("to_bf16_rows: a block of columns", vals, vref, 0);
        check("to_bf16_rows: zeros (a part that reached no loss)", zeros, zref, 0);
        // from bf16 sources (attention's bf16 gradients): the incoming gradient's bits, copied or read as they are
        auto src16 = bf16_bits_of(src);
        auto dy16 = bf16_bits_of(dy);
        Dev dsrc16(src16), ddy16(dy16), ddyf(widened(dy16)), dref(bf16_nans(b * t * ld));
        NC(nc_to_bf16_rows(ctx, djoint.p, ld, dsrc16.p, 1, b * t, 3));
        joint = djoint.get<uint16_t>();
        vals.clear(); vref.clear();
        for (int64_t r = 0; r < b * t; r++)
            for (int64_t c2 = 0; c2 < 3; c2++) { vals.push_back(from_bf16(joint[r * ld + c2])); vref.push_back(from_bf16(src16[r * 3 + c2])); }
        check("to_bf16_rows: from bf16 (a copy)", vals, vref, 0);
        NC(nc_rotary_norm_backward_bf16_rows(ctx, (uint16_t *)djoint.p + col, ld, ddy16.p, 1, dq16.p, 1, dqrs16.f(), dc.f(), ds.f(), b, t, h, d,
                                             offset, gain));
        NC(nc_rotary_norm_backward_bf16_rows(ctx, (uint16_t *)dref.p + col, ld, ddyf.f(), 0, dq16.p, 1, dqrs16.f(), dc.f(), ds.f(), b, t, h,
                                             d, offset, gain));
        auto from16 = djoint.get<uint16_t>(), fromf = dref.get<uint16_t>();
        std::vector<float> a16;
        std::vector<double> af;
        for (int64_t r = 0; r < b * t; r++)
            for (int64_t c2 = col; c2 < col + h * d; c2++) { a16.push_back(from_bf16(from16[r * ld + c2])); af.push_back(from_bf16(fromf[r * ld + c2])); }
        check("rotary+norm backward rows from a bf16 dy = from its floats", a16, af, 1e-6);
    }
}

static void check_relu2(int64_t n) {
    auto x = randn(n), dy = randn(n);
    std::vector<double> y(n), dx(n);
    for (int64_t i = 0; i < n; i++) {
        double r = x[i] > 0 ? x[i] : 0;
        y[i] = r * r;
        dx[i] = 2 * r * dy[i];
    }
    Dev dxin(x), dout(nans(n)), dg(dy), ddx(nans(n));
    NC(nc_relu2_forward(ctx, dout.f(), dxin.f(), n));
    check("relu2 forward", dout.get<float>(), y, 1e-7);
    NC(nc_relu2_backward(ctx, ddx.f(), dg.f(), dxin.f(), n, 0));
    check("relu2 backward", ddx.get<float>(), dx, 1e-7);
    // bf16 in and out: the reference from the same bf16 values, each result rounded to bf16 once; the backward in place
    std::vector<uint16_t> x16(n), g16(n);
    std::vector<double> y16(n), dx16(n);
    for (int64_t i = 0; i < n; i++) {
        x16[i] = to_bf16(x[i]); g16[i] = to_bf16(dy[i]);
        double r = std::max(0.0, (double)from_bf16(x16[i]));
        y16[i] = round_bf16((float)(r * r));
        dx16[i] = round_bf16((float)(2 * r * from_bf16(g16[i])));
    }
    Dev dx16in(x16), dy16(std::vector<uint16_t>(n, 0xFFFF)), dg16(g16);
    auto back = [](Dev &d) { std::vector<float> v; for (auto b : d.get<uint16_t>()) v.push_back(from_bf16(b)); return v; };
    NC(nc_relu2_forward_bf16(ctx, dy16.p, dx16in.p, n));
    check("relu2 forward bf16", back(dy16), y16, 1e-7);
    NC(nc_relu2_backward_bf16(ctx, dg16.p, dg16.p, dx16in.p, n));
    check("relu2 backward bf16 (in place)", back(dg16), dx16, 1e-7);
    // in place over x (the MLP writes relu(h)^2 over h), then the backward from that output: 2 sqrt(y) dy
    std::vector<double> dxy(n);
    for (int64_t i = 0; i < n; i++) dxy[i] = round_bf16((float)(2 * sqrt((double)(float)y16[i]) * from_bf16(g16[i])));
    Dev dinplace(x16), dg16b(g16);
    NC(nc_relu2_forward_bf16(ctx, dinplace.p, dinplace.p, n));
    check("relu2 forward bf16 (in place)", back(dinplace), y16, 1e-7);
    NC(nc_relu2_backward_from_output_bf16(ctx, dg16b.p, dg16b.p, dinplace.p, n));
    check("relu2 backward bf16 from its output (in place)", back(dg16b), dxy, 2e-3);  // sqrtf vs double may flip a rounding
}

// softcap + cross-entropy in double: each row's loss and the gradient over the logits (padding columns 0)
static void classifier_reference(const std::vector<float> &z, const std::vector<int32_t> &targets, int64_t rows, int64_t vocab,
                                 int64_t ld, float cap, float scale, std::vector<double> &loss, std::vector<double> &grad) {
    loss.assign(rows, 0.0);
    grad.assign(rows * ld, 0.0);
    for (int64_t r = 0; r < rows; r++) {
        double sum = 0;
        for (int64_t j = 0; j < vocab; j++) sum += exp(cap * tanh(z[r * ld + j] / cap));
        double lse = log(sum);
        int t = targets[r];
        loss[r] = t < 0 ? 0 : lse - cap * tanh(z[r * ld + t] / cap);
        if (t < 0) continue;
        for (int64_t j = 0; j < vocab; j++) {
            double th = tanh(z[r * ld + j] / cap);
            grad[r * ld + j] = (exp(cap * th - lse) - (j == t)) * (1 - th * th) * scale;
        }
    }
}

static void check_classifier(int64_t rows, int64_t vocab, int64_t ld) {
    const float cap = 15;
    auto z = randn(rows * ld, 8);
    std::vector<int32_t> targets(rows);
    int valid = 0;
    for (int64_t r = 0; r < rows; r++) {
        targets[r] = urand() < 0.15 ? -1 : (int32_t)(urand() * vocab);
        valid += targets[r] >= 0;
    }
    const float scale = 1.f / valid;
    std::vector<double> loss, grad;
    classifier_reference(z, targets, rows, vocab, ld, cap, scale, loss, grad);
    Dev dz(z), dl(nans(rows)), dt(targets);
    NC(nc_softcap_cross_entropy(ctx, dz.f(), dl.f(), (const int32_t *)dt.p, nullptr, rows, vocab, ld, cap, 0));
    check("softcap+CE losses (no gradient)", dl.get<float>(), loss, 1e-5);
    std::vector<double> zd(z.begin(), z.end());
    check("softcap+CE leaves the logits without gradient", dz.get<float>(), zd, 0);
    NC(nc_softcap_cross_entropy(ctx, dz.f(), dl.f(), (const int32_t *)dt.p, nullptr, rows, vocab, ld, cap, scale));
    check("softcap+CE losses", dl.get<float>(), loss, 1e-5);
    check("softcap+CE gradient over the logits (padded rows)", dz.get<float>(), grad, 1e-5);
    // RL's weighted form: each row's gradient times its weight (an advantage, of either sign)
    auto weights = randn(rows);
    std::vector<double> wgrad(grad);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < ld; j++) wgrad[r * ld + j] *= weights[r];
    Dev dz2(z), dw(weights);
    NC(nc_softcap_cross_entropy(ctx, dz2.f(), dl.f(), (const int32_t *)dt.p, dw.f(), rows, vocab, ld, cap, scale));
    check("softcap+CE gradient with row weights", dz2.get<float>(), wgrad, 1e-5);
    // the loss as one device scalar: plain sum and weighted sum of the per-row losses
    double sum = 0, wsum = 0;
    for (int64_t r = 0; r < rows; r++) { sum += loss[r]; wsum += loss[r] * weights[r]; }
    Dev dsum(nans(1));
    NC(nc_dot(ctx, dsum.f(), dl.f(), nullptr, rows, 0));
    check("dot: sum of the losses", dsum.get<float>(), {sum}, 1e-6);
    NC(nc_dot(ctx, dsum.f(), dl.f(), dw.f(), rows, 1));
    check("dot: weighted sum, accumulated", dsum.get<float>(), {sum + wsum}, 1e-6);
    // over bf16 logits: the reference from the same bf16 values, the gradient rounded to bf16 once
    std::vector<uint16_t> zb(rows * ld);
    std::vector<float> zr(rows * ld);
    for (int64_t i = 0; i < rows * ld; i++) { zb[i] = to_bf16(z[i]); zr[i] = from_bf16(zb[i]); }
    std::vector<double> lossb, gradb;
    classifier_reference(zr, targets, rows, vocab, ld, cap, scale, lossb, gradb);
    for (auto &g : gradb) g = round_bf16((float)g);
    Dev dzb(zb);
    NC(nc_softcap_cross_entropy_bf16(ctx, dzb.p, dl.f(), (const int32_t *)dt.p, nullptr, rows, vocab, ld, cap, scale));
    check("softcap+CE bf16 losses", dl.get<float>(), lossb, 1e-5);
    std::vector<float> gotb;
    for (auto x : dzb.get<uint16_t>()) gotb.push_back(from_bf16(x));
    check("softcap+CE bf16 gradient over the logits", gotb, gradb, 1e-2);
}

static void check_axpby_softcap(int64_t n) {
    auto x = randn(n), y = randn(n), z = randn(n, 30);
    std::vector<float> s = {0.75f};
    std::vector<double> sum(n), scaled(n), capped(n);
    for (int64_t i = 0; i < n; i++) {
        sum[i] = 2.0 * 0.75 * x[i] - 0.5 * y[i];
        scaled[i] = 3.0 * x[i];
        capped[i] = 15 * tanh(z[i] / 15.0);
    }
    Dev dx(x), dy(y), ds(s), dz(z), dout(nans(n));
    NC(nc_axpby(ctx, dy.f(), dx.f(), 2, ds.f(), -0.5f, n));
    check("axpby with a device scale", dy.get<float>(), sum, 1e-7);
    NC(nc_axpby(ctx, dout.f(), dx.f(), 3, nullptr, 0, n));  // b = 0: the NaNs already there are not read
    check("axpby, b = 0 over NaN", dout.get<float>(), scaled, 1e-7);
    NC(nc_softcap(ctx, dz.f(), n, 15));
    check("softcap in place", dz.get<float>(), capped, 1e-6);
}

// The engine's cache: a chunk appended at each row's own position (rows in another order than the batch), then its
// queries attend over the cached span the window allows; the reference in double from the same cache contents (with
// a bf16 cache: the contents rounded to bf16, as the kernel stores them).
static void check_kv_cache(int64_t b, int64_t t, int64_t h, int64_t hkv, int64_t d, int64_t cap, int64_t window, int bf16) {
    int64_t rows_total = b + 1;
    auto kc = randn(rows_total * hkv * cap * d), vc = randn(rows_total * hkv * cap * d);
    auto knew = randn(b * t * hkv * d), vnew = randn(b * t * hkv * d), q = randn(b * t * h * d);
    std::vector<int32_t> rows(b), starts(b);
    for (int64_t i = 0; i < b; i++) { rows[i] = (int32_t)((i * 7 + 1) % rows_total); starts[i] = (int32_t)((i * 13) % (cap - t + 1)); }
    auto stored = [&](float x) { return bf16 ? round_bf16(x) : x; };
    // the reference cache after the append, as stored
    std::vector<float> kr(kc.size()), vr(vc.size());
    for (size_t i = 0; i < kc.size(); i++) { kr[i] = stored(kc[i]); vr[i] = stored(vc[i]); }
    for (int64_t bi = 0; bi < b; bi++)
        for (int64_t ti = 0; ti < t; ti++)
            for (int64_t hh = 0; hh < hkv; hh++)
                for (int64_t c = 0; c < d; c++) {
                    int64_t dst = ((rows[bi] * hkv + hh) * cap + starts[bi] + ti) * d + c, src = ((bi * t + ti) * hkv + hh) * d + c;
                    kr[dst] = stored(knew[src]);
                    vr[dst] = stored(vnew[src]);
                }
    std::vector<double> ref(b * t * h * d);
    for (int64_t bi = 0; bi < b; bi++)
        for (int64_t ti = 0; ti < t; ti++)
            for (int64_t hh = 0; hh < h; hh++) {
                int64_t kh = hh / (h / hkv), p = starts[bi] + ti, lo = p - window > 0 ? p - window : 0;
                std::vector<double> sc(p - lo + 1);
                double mx = -1e300, sum = 0;
                for (int64_t j = lo; j <= p; j++) {
                    double dot = 0;
                    for (int64_t c = 0; c < d; c++) dot += (double)q[((bi * t + ti) * h + hh) * d + c] * kr[((rows[bi] * hkv + kh) * cap + j) * d + c];
                    sc[j - lo] = dot / sqrt((double)d);
                    mx = sc[j - lo] > mx ? sc[j - lo] : mx;
                }
                for (auto &x : sc) { x = exp(x - mx); sum += x; }
                for (int64_t c = 0; c < d; c++) {
                    double acc = 0;
                    for (int64_t j = lo; j <= p; j++) acc += sc[j - lo] * vr[((rows[bi] * hkv + kh) * cap + j) * d + c];
                    ref[((bi * t + ti) * h + hh) * d + c] = acc / sum;
                }
            }
    std::vector<uint16_t> k16(kc.size()), v16(vc.size());
    for (size_t i = 0; i < kc.size(); i++) { k16[i] = to_bf16(kc[i]); v16[i] = to_bf16(vc[i]); }
    Dev dk32(kc), dv32(vc), dk16(k16), dv16(v16), dkn(knew), dvn(vnew), dq(q), dr(rows), ds(starts), dout(nans(b * t * h * d));
    Dev &dk = bf16 ? dk16 : dk32, &dv = bf16 ? dv16 : dv32;
    NC(nc_kv_append(ctx, dk.p, dkn.f(), (const int32_t *)dr.p, (const int32_t *)ds.p, b, t, hkv, d, cap, bf16));
    NC(nc_kv_append(ctx, dv.p, dvn.f(), (const int32_t *)dr.p, (const int32_t *)ds.p, b, t, hkv, d, cap, bf16));
    std::vector<float> got;
    if (bf16) { for (auto x : dk.get<uint16_t>()) got.push_back(from_bf16(x)); } else got = dk.get<float>();
    std::vector<double> krd(kr.begin(), kr.end());
    check(bf16 ? "kv append at each row's position (bf16 cache)" : "kv append at each row's position", got, krd, 0);
    NC(nc_cached_attention(ctx, dout.f(), dq.f(), dk.p, dv.p, (const int32_t *)dr.p, (const int32_t *)ds.p, b, t, h, hkv, d, cap, window, bf16));
    char name[160];
    snprintf(name, sizeof name, "cached attention%s b%lld t%lld h%lld/%lld d%lld cap %lld window %lld", bf16 ? " (bf16 cache)" : "",
             (long long)b, (long long)t, (long long)h, (long long)hkv, (long long)d, (long long)cap, (long long)window);
    check(name, dout.get<float>(), ref, 1e-5);
}

static void check_adamw(int64_t n) {
    auto p = randn(n), m = randn(n, 0.1), v = randn(n, 0.1);
    for (auto &x : v) x = x * x;
    std::vector<double> pr(p.begin(), p.end()), mr(m.begin(), m.end()), vr(v.begin(), v.end());
    Dev dp(p), dm(m), dv(v);
    const float lr = 0.01f, b1 = 0.8f, b2 = 0.95f, eps = 1e-10f, wd = 0.01f;
    for (int step = 1; step <= 2; step++) {
        auto g = randn(n);
        Dev dg(g);
        NC(nc_adamw_step(ctx, dp.f(), dg.f(), dm.f(), dv.f(), n, lr, b1, b2, eps, wd, step));
        for (int64_t i = 0; i < n; i++) {
            pr[i] *= 1 - (double)lr * wd;
            mr[i] += (1 - (double)b1) * (g[i] - mr[i]);
            vr[i] += (1 - (double)b2) * ((double)g[i] * g[i] - vr[i]);
            pr[i] -= lr / (1 - pow(b1, step)) * mr[i] / (sqrt(vr[i] / (1 - pow(b2, step))) + eps);
        }
    }
    check("adamw two steps: parameters", dp.get<float>(), pr, 1e-6);
    check("adamw two steps: first moment", dm.get<float>(), mr, 1e-6);
}


// bf16: the tensor-core kernels, against the exact reference on the same inputs rounded to bf16 (what the kernels
// read); their probabilities and dS are rounded to bf16 for the products too, hence the wider tolerance
// which bf16 attention the checks and timings below run: "bf16 WMMA" or "bf16 cuDNN" (nc_attention_select)
static const char *bf16_backend = "bf16 WMMA";

static void check_attention(int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D, int64_t window, bool bf16 = false) {
    int64_t nq = B * T * H * D, nk = B * T * Hkv * D;
    auto q = randn(nq), k = randn(nk), v = randn(nk), dout = randn(nq);
    if (bf16) for (auto *t : {&q, &k, &v, &dout}) for (auto &x : *t) x = round_bf16(x);
    std::vector<double> o(nq, 0), dq(nq, 0), dk(nk, 0), dv(nk, 0);
    double scale = 1 / sqrt((double)D);
    int64_t w = window < T ? window : T;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            int64_t kh = h / (H / Hkv);
            for (int64_t i = 0; i < T; i++) {
                const float *qi = &q[((b * T + i) * H + h) * D], *gi = &dout[((b * T + i) * H + h) * D];
                int64_t lo = i - w > 0 ? i - w : 0;
                std::vector<double> p(i - lo + 1), dp(i - lo + 1);
                double mx = -1e300, sum = 0;
                for (int64_t j = lo; j <= i; j++) {
                    const float *kj = &k[((b * T + j) * Hkv + kh) * D];
                    double s = 0;
                    for (int64_t d = 0; d < D; d++) s += (double)qi[d] * kj[d];
                    p[j - lo] = s * scale;
                    mx = p[j - lo] > mx ? p[j - lo] : mx;
                }
                for (auto &x : p) { x = exp(x - mx); sum += x; }
                for (auto &x : p) x /= sum;
                double *oi = &o[((b * T + i) * H + h) * D];
                for (int64_t j = lo; j <= i; j++)
                    for (int64_t d = 0; d < D; d++) oi[d] += p[j - lo] * v[((b * T + j) * Hkv + kh) * D + d];
                double delta = 0;
                for (int64_t d = 0; d < D; d++) delta += gi[d] * oi[d];
                for (int64_t j = lo; j <= i; j++) {
                    const float *vj = &v[((b * T + j) * Hkv + kh) * D], *kj = &k[((b * T + j) * Hkv + kh) * D];
                    double g = 0;
                    for (int64_t d = 0; d < D; d++) g += (double)gi[d] * vj[d];
                    double ds = p[j - lo] * (g - delta) * scale, pj = p[j - lo];
                    for (int64_t d = 0; d < D; d++) {
                        dv[((b * T + j) * Hkv + kh) * D + d] += pj * gi[d];
                        dk[((b * T + j) * Hkv + kh) * D + d] += ds * qi[d];
                        dq[((b * T + i) * H + h) * D + d] += ds * kj[d];
                    }
                }
            }
        }
    // the gradients start as NaN: written (accumulate 0) they must not show through; then added (accumulate 1) twice
    // bf16: q, k, v and o are bf16 buffers (the training path's activations), the gradients fp32
    Dev dqv(q), dkv(k), dvv(v), dov(nans(nq)), dl(nans(B * H * T)), dg(dout), gq(nans(nq)), gk(nans(nk)), gv(nans(nk)),
        delta(nans(B * H * T));
    Dev q16(bf16_bits_of(q)), k16(bf16_bits_of(k)), v16(bf16_bits_of(v)), o16(bf16_nans(nq));
    const char *kind = bf16 ? bf16_backend : "fp32";
    if (bf16) NC(nc_attention_forward_bf16(ctx, o16.p, dl.f(), q16.p, k16.p, v16.p, B, T, H, Hkv, D, window));
    else NC(nc_attention_forward(ctx, dov.f(), dl.f(), dqv.f(), dkv.f(), dvv.f(), B, T, H, Hkv, D, window));
    char name[128];
    snprintf(name, sizeof name, "attention %s forward B%lld T%lld H%lld/%lld D%lld w%lld", kind, (long long)B, (long long)T,
             (long long)H, (long long)Hkv, (long long)D, (long long)window);
    check(name, bf16 ? widened(o16.get<uint16_t>()) : dov.get<float>(), o, bf16 ? 1e-2 : 1e-5);
    for (int accumulate = 0; accumulate < 2; accumulate++) {
        if (bf16)
            NC(nc_attention_backward_bf16(ctx, gq.f(), gk.f(), gv.f(), 0, delta.f(), q16.p, k16.p, v16.p, o16.p, dg.f(), 0, dl.f(), B, T, H,
                                          Hkv, D, window, accumulate));
        else
            NC(nc_attention_backward(ctx, gq.f(), gk.f(), gv.f(), delta.f(), dqv.f(), dkv.f(), dvv.f(), dov.f(), dg.f(), dl.f(), B, T, H,
                                     Hkv, D, window, accumulate));
        double times = accumulate ? 2 : 1;  // written once, then the same added
        std::vector<double> rq(dq), rk(dk), rv(dv);
        for (auto &x : rq) x *= times;
        for (auto &x : rk) x *= times;
        for (auto &x : rv) x *= times;
        const char *mode = accumulate ? "added" : "written";
        snprintf(name, sizeof name, "attention %s backward dq %s (w%lld D%lld)", kind, mode, (long long)window, (long long)D);
        check(name, gq.get<float>(), rq, bf16 ? 2e-2 : 1e-4);
        snprintf(name, sizeof name, "attention %s backward dk %s (w%lld D%lld)", kind, mode, (long long)window, (long long)D);
        check(name, gk.get<float>(), rk, bf16 ? 2e-2 : 1e-4);
        snprintf(name, sizeof name, "attention %s backward dv %s (w%lld D%lld)", kind, mode, (long long)window, (long long)D);
        check(name, gv.get<float>(), rv, bf16 ? 2e-2 : 1e-4);
    }
    if (!bf16) return;
    // the training path's form: dout in bf16 (c_proj's dX written in bf16), the gradients written in bf16 (what cuDNN
    // makes; the ops before read them so): against the same reference, one more bf16 rounding of each
    Dev dg16(bf16_bits_of(dout)), gq16(bf16_nans(nq)), gk16(bf16_nans(nk)), gv16(bf16_nans(nk));
    NC(nc_attention_backward_bf16(ctx, gq16.p, gk16.p, gv16.p, 1, delta.f(), q16.p, k16.p, v16.p, o16.p, dg16.p, 1, dl.f(), B, T, H, Hkv, D,
                                  window, 0));
    const char *parts[3] = {"dq", "dk", "dv"};
    Dev *grads[3] = {&gq16, &gk16, &gv16};
    const std::vector<double> *refs[3] = {&dq, &dk, &dv};
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "attention %s backward %s in bf16 from a bf16 dout (w%lld D%lld)", kind, parts[i], (long long)window,
                 (long long)D);
        check(name, widened(grads[i]->get<uint16_t>()), *refs[i], 2.5e-2);
    }
}

static double sig(double x) { return 1 / (1 + exp(-x)); }

static void check_gates() {
    const int64_t B = 2, T = 9, C = 40, K = 24, V = 50, HKV = 2, D = 16, KG = 12;
    // embedding, with repeated ids
    std::vector<int32_t> ids(B * T);
    for (auto &i : ids) i = (int32_t)(urand() * 7);  // only 7 distinct rows: repeats scatter-add
    auto table = randn(V * C), g = randn(B * T * C);
    std::vector<double> emb(B * T * C), dtab(V * C, 0);
    for (int64_t i = 0; i < B * T; i++)
        for (int64_t j = 0; j < C; j++) { emb[i * C + j] = table[ids[i] * C + j]; dtab[ids[i] * C + j] += g[i * C + j]; }
    {
        Dev dt(table), di(ids), dout(nans(B * T * C)), dg(g), dd(std::vector<float>(V * C, 0.f));
        NC(nc_embedding_forward(ctx, dout.f(), dt.f(), (const int32_t *)di.p, B * T, C));
        check("embedding forward", dout.get<float>(), emb, 0);
        NC(nc_embedding_backward(ctx, dd.f(), dg.f(), (const int32_t *)di.p, B * T, C));
        check("embedding backward (scatter-add of repeated ids)", dd.get<float>(), dtab, 1e-6);
    }
    // smear
    auto x = randn(B * T * C), gate = randn(K, 0.3), dout = randn(B * T * C);
    std::vector<float> lam = {0.7f};
    std::vector<double> out(B * T * C), dx(B * T * C, 0), dgate(K, 0), dlam(1, 0);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            int64_t r = b * T + t;
            if (t == 0) { for (int64_t j = 0; j < C; j++) out[r * C + j] = x[r * C + j]; }
            else {
                double a = 0;
                for (int64_t j = 0; j < K; j++) a += (double)gate[j] * x[r * C + j];
                double s = sig(a), gp = 0;
                for (int64_t j = 0; j < C; j++) { out[r * C + j] = x[r * C + j] + lam[0] * s * x[(r - 1) * C + j]; gp += dout[r * C + j] * x[(r - 1) * C + j]; }
                for (int64_t j = 0; j < C; j++) dx[(r - 1) * C + j] += lam[0] * s * dout[r * C + j];
                dlam[0] += s * gp;
                double da = lam[0] * gp * s * (1 - s);
                for (int64_t j = 0; j < K; j++) { dgate[j] += da * x[r * C + j]; dx[r * C + j] += da * gate[j]; }
            }
            for (int64_t j = 0; j < C; j++) dx[r * C + j] += dout[r * C + j];
        }
    {
        Dev dxv(x), dgt(gate), dl(lam), dout2(nans(B * T * C)), gs(nans(B * T)), dgo(dout);
        Dev ddx(std::vector<float>(B * T * C, 0.f)), ddg(std::vector<float>(K, 0.f)), ddl(std::vector<float>(1, 0.f));
        NC(nc_smear_forward(ctx, dout2.f(), gs.f(), dxv.f(), dgt.f(), dl.f(), B, T, C, (int)K));
        check("smear forward", dout2.get<float>(), out, 1e-6);
        NC(nc_smear_backward(ctx, ddx.f(), ddg.f(), ddl.f(), dgo.f(), dxv.f(), gs.f(), dgt.f(), dl.f(), B, T, C, (int)K));
        check("smear backward dx", ddx.get<float>(), dx, 1e-6);
        check("smear backward dgate", ddg.get<float>(), dgate, 1e-5);
        check("smear backward dlambda", ddl.get<float>(), dlam, 1e-5);
    }
    // value-embedding gate: n = B*T rows of HKV heads of D; u is [n, C]
    int64_t n = B * T;
    auto v = randn(n * HKV * D), ve = randn(n * HKV * D), u = randn(n * C), vg = randn(HKV * KG, 0.3), go = randn(n * HKV * D);
    std::vector<double> vo(n * HKV * D), dv(n * HKV * D), dve(n * HKV * D), du(n * C, 0), dvg(HKV * KG, 0);
    for (int64_t i = 0; i < n; i++)
        for (int64_t h = 0; h < HKV; h++) {
            double a = 0;
            for (int64_t j = 0; j < KG; j++) a += (double)vg[h * KG + j] * u[i * C + j];
            double s = sig(a), dot = 0;
            for (int64_t j = 0; j < D; j++) {
                int64_t e = (i * HKV + h) * D + j;
                vo[e] = v[e] + 3 * s * ve[e];
                dv[e] = go[e];
                dve[e] = 3 * s * go[e];
                dot += go[e] * ve[e];
            }
            double da = dot * 3 * s * (1 - s);
            for (int64_t j = 0; j < KG; j++) { dvg[h * KG + j] += da * u[i * C + j]; du[i * C + j] += da * vg[h * KG + j]; }
        }
    {
        std::vector<float> z(n * HKV * D, 0.f);
        Dev dvv(v), dvev(ve), duv(u), dvgv(vg), dout3(nans(n * HKV * D)), sg(nans(n * HKV)), dgo(go);
        Dev gdv(z), gdve(z), gdu(std::vector<float>(n * C, 0.f)), gdvg(std::vector<float>(HKV * KG, 0.f));
        NC(nc_value_embedding_forward(ctx, dout3.f(), sg.f(), dvv.f(), 0, dvev.f(), duv.f(), 0, dvgv.f(), n, HKV, D, C, (int)KG));
        check("value-embedding gate forward", dout3.get<float>(), vo, 1e-6);
        NC(nc_value_embedding_backward(ctx, gdv.f(), gdve.f(), gdu.f(), gdvg.f(), dgo.f(), 0, dvev.f(), duv.f(), 0, dvgv.f(),
                                       sg.f(), n, HKV, D, C, (int)KG));
        check("value-embedding gate backward dv", gdv.get<float>(), dv, 1e-6);
        check("value-embedding gate backward dve", gdve.get<float>(), dve, 1e-6);
        check("value-embedding gate backward du", gdu.get<float>(), du, 1e-5);
        check("value-embedding gate backward dgate", gdvg.get<float>(), dvg, 1e-5);
        // the bf16 path: v and u bf16, the output written over v in bf16 (in place, as the model runs it); equal to the
        // fp32 kernel on the same values as floats, rounded once
        auto v16 = bf16_bits_of(v), u16 = bf16_bits_of(u);
        Dev dv16(v16), du16(u16), dvf(widened(v16)), duf(widened(u16)), sg16(nans(n * HKV)), outf(nans(n * HKV * D));
        NC(nc_value_embedding_forward(ctx, dv16.p, sg16.f(), dv16.p, 1, dvev.f(), du16.p, 1, dvgv.f(), n, HKV, D, C, (int)KG));
        NC(nc_value_embedding_forward(ctx, outf.f(), sg.f(), dvf.f(), 0, dvev.f(), duf.f(), 0, dvgv.f(), n, HKV, D, C, (int)KG));
        std::vector<double> rounded;
        for (float x : outf.get<float>()) rounded.push_back(round_bf16(x));
        check("value-embedding gate over bf16 v and u, in place", widened(dv16.get<uint16_t>()), rounded, 1e-4);
        // the backward from bf16 u and a bf16 incoming gradient (attention's, in the training path) = from their floats
        auto go16 = bf16_bits_of(go);
        Dev dgo16(go16), dgof(widened(go16)), gdv16(z), gdvf(z);
        Dev gdu16(std::vector<float>(n * C, 0.f)), gdvg16(std::vector<float>(HKV * KG, 0.f));
        Dev gduf(std::vector<float>(n * C, 0.f)), gdvgf(std::vector<float>(HKV * KG, 0.f));
        NC(nc_value_embedding_backward(ctx, gdv16.f(), nullptr, gdu16.f(), gdvg16.f(), dgo16.p, 1, dvev.f(), du16.p, 1, dvgv.f(), sg16.f(), n,
                                       HKV, D, C, (int)KG));
        NC(nc_value_embedding_backward(ctx, gdvf.f(), nullptr, gduf.f(), gdvgf.f(), dgof.f(), 0, dvev.f(), duf.f(), 0, dvgv.f(), sg16.f(), n,
                                       HKV, D, C, (int)KG));
        std::vector<double> refv, refu, refg;
        for (float x : gdvf.get<float>()) refv.push_back(x);
        for (float x : gduf.get<float>()) refu.push_back(x);
        for (float x : gdvgf.get<float>()) refg.push_back(x);
        // atomics: the same sums in another order may differ in the last bit
        check("value-embedding gate backward from bf16: dv", gdv16.get<float>(), refv, 0);
        check("value-embedding gate backward from bf16: du", gdu16.get<float>(), refu, 1e-6);
        check("value-embedding gate backward from bf16: dgate", gdvg16.get<float>(), refg, 1e-6);
    }
    // scalar mix: alpha[1] a + beta[2] b over a long vector (several blocks reduce the scalar gradients)
    int64_t m = 300001;
    auto a = randn(m), bb = randn(m), gm = randn(m);
    std::vector<float> alpha = {0.3f, 1.1f}, beta = {0.5f, 0.2f, -0.4f};
    std::vector<double> mo(m), ga(m), gb(m), galpha(2, 0), gbeta(3, 0);
    for (int64_t i = 0; i < m; i++) {
        mo[i] = alpha[1] * (double)a[i] + beta[2] * (double)bb[i];
        ga[i] = alpha[1] * (double)gm[i];
        gb[i] = beta[2] * (double)gm[i];
        galpha[1] += (double)gm[i] * a[i];
        gbeta[2] += (double)gm[i] * bb[i];
    }
    {
        std::vector<float> z(m, 0.f);
        Dev da(a), db(bb), dal(alpha), dbe(beta), dout4(nans(m)), dgm(gm), gav(z), gbv(z);
        Dev gal(std::vector<float>(2, 0.f)), gbe(std::vector<float>(3, 0.f));
        NC(nc_scalar_mix_forward(ctx, dout4.f(), da.f(), db.f(), dal.f(), 1, dbe.f(), 2, m));
        check("scalar mix forward", dout4.get<float>(), mo, 1e-6);
        NC(nc_scalar_mix_backward(ctx, gav.f(), gbv.f(), gal.f(), gbe.f(), dgm.f(), da.f(), db.f(), dal.f(), 1, dbe.f(), 2, m, 1, 1));
        check("scalar mix backward da", gav.get<float>(), ga, 1e-6);
        check("scalar mix backward db", gbv.get<float>(), gb, 1e-6);
        // written (fresh gradients: NaN-filled before) and added, in one call
        Dev gaw(nans(m)), gbw(gm), gal2(std::vector<float>(2, 0.f)), gbe2(std::vector<float>(3, 0.f));
        NC(nc_scalar_mix_backward(ctx, gaw.f(), gbw.f(), gal2.f(), gbe2.f(), dgm.f(), da.f(), db.f(), dal.f(), 1, dbe.f(), 2, m, 0, 1));
        std::vector<double> gbadded(m);
        for (int64_t i = 0; i < m; i++) gbadded[i] = gm[i] + gb[i];
        check("scalar mix backward da written", gaw.get<float>(), ga, 1e-6);
        check("scalar mix backward db added", gbw.get<float>(), gbadded, 1e-6);
        check("scalar mix backward dalpha (only its own index)", gal.get<float>(), galpha, 1e-5);
        check("scalar mix backward dbeta (only its own index)", gbe.get<float>(), gbeta, 1e-5);
    }
    // backout: x - lambda saved, over the same long vector
    {
        std::vector<float> lam = {0.37f};
        std::vector<double> bo(m), gs(m), glam(1, 0);
        for (int64_t i = 0; i < m; i++) {
            bo[i] = (double)a[i] - lam[0] * (double)bb[i];
            gs[i] = 0.5 - lam[0] * (double)gm[i];  // added to a gradient that held 0.5
            glam[0] += -(double)gm[i] * bb[i];
        }
        Dev da(a), db(bb), dl(lam), dout5(nans(m)), dgm(gm), gsv(std::vector<float>(m, 0.5f)), gl(std::vector<float>(1, 0.f));
        NC(nc_backout_forward(ctx, dout5.f(), da.f(), db.f(), dl.f(), m));
        check("backout forward", dout5.get<float>(), bo, 1e-6);
        NC(nc_backout_backward(ctx, gsv.f(), gl.f(), dgm.f(), db.f(), dl.f(), m));
        check("backout backward dsaved (accumulated)", gsv.get<float>(), gs, 1e-6);
        check("backout backward dlambda", gl.get<float>(), glam, 1e-5);
    }
}

// Upstream's Muon step for one matrix, in double (the Swift CPU optimizer's order of operations)
static double bf16_round(double v) { return round_bf16((float)v); }  // float, then bf16, as the device does

// bf16: the operands of each Polar Express product are rounded to bf16 first (products accumulate exactly), as
// the device's bf16 mode does; the rest of the step stays in full precision.
static void muon_reference(std::vector<double> &p, const std::vector<float> &g, std::vector<double> &mbuf,
                           std::vector<double> &sbuf, int64_t rows, int64_t cols, double lr, double wd, double mu,
                           double beta2, bool bf16) {
    auto rd = [bf16](double v) { return bf16 ? bf16_round(v) : v; };
    static const double pe[5][3] = {{8.156554524902461, -22.48329292557795, 15.878769915207462},
                                    {4.042929935166739, -2.808917465908714, 0.5000178451051316},
                                    {3.8916678022926607, -2.772484153217685, 0.5060648178503393},
                                    {3.285753657755655, -2.3681294933425376, 0.46449024233003106},
                                    {2.3465413258596377, -1.7097828382687081, 0.42323551169305323}};
    int64_t size = rows * cols, small = rows < cols ? rows : cols;
    std::vector<double> u(size);
    for (int64_t i = 0; i < size; i++) { mbuf[i] += (1 - mu) * (g[i] - mbuf[i]); u[i] = g[i] + mu * (mbuf[i] - g[i]); }
    auto fro = [&](const std::vector<double> &x) { double s = 0; for (double v : x) s += v * v; return sqrt(s); };
    double target = fro(u) / sqrt((double)rows);
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t j = 0; j < cols; j++) s += u[r * cols + j] * u[r * cols + j];
        double f = target / std::max(sqrt(s), 1e-6);
        for (int64_t j = 0; j < cols; j++) u[r * cols + j] *= f;
    }
    double inv = 1 / (fro(u) * 1.01 + 1e-6);
    for (auto &v : u) v *= inv;
    for (int it = 0; it < 5; it++) {
        std::vector<double> A(small * small, 0), B(small * small, 0), X2(size, 0), ur(size), Ar(small * small),
            Br(small * small);
        for (int64_t i = 0; i < size; i++) ur[i] = rd((float)u[i]);
        for (int64_t i = 0; i < small; i++)
            for (int64_t j = 0; j < small; j++) {
                double s = 0;
                if (rows > cols) for (int64_t l = 0; l < rows; l++) s += ur[l * cols + i] * ur[l * cols + j];
                else for (int64_t l = 0; l < cols; l++) s += ur[i * cols + l] * ur[j * cols + l];
                A[i * small + j] = (float)s;
            }
        for (int64_t i = 0; i < small * small; i++) Ar[i] = rd(A[i]);
        for (int64_t i = 0; i < small; i++)
            for (int64_t j = 0; j < small; j++) {
                double s = 0;
                for (int64_t l = 0; l < small; l++) s += Ar[i * small + l] * Ar[l * small + j];
                B[i * small + j] = (float)(pe[it][2] * s) + pe[it][1] * A[i * small + j];
            }
        for (int64_t i = 0; i < small * small; i++) Br[i] = rd((float)B[i]);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                double s = 0;
                if (rows > cols) for (int64_t l = 0; l < cols; l++) s += ur[r * cols + l] * Br[l * small + c];
                else for (int64_t l = 0; l < rows; l++) s += Br[r * small + l] * ur[l * cols + c];
                X2[r * cols + c] = (float)(pe[it][0] * u[r * cols + c] + s);
            }
        u = X2;
    }
    double plus = sqrt((double)small) / std::max(fro(u), 1e-6);
    for (auto &v : u) v *= plus;
    bool per_row = rows >= cols;
    int64_t m = per_row ? rows : cols;
    double n = per_row ? cols : rows;
    std::vector<double> st(m, 0);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) st[per_row ? r : c] += u[r * cols + c] * u[r * cols + c] / n;
    double vn = 0, vnew = 0;
    for (int64_t i = 0; i < m; i++) {
        vn += st[i] * n;
        sbuf[i] += (1 - beta2) * (st[i] - sbuf[i]);
        double step = 1 / sqrt(std::max(sbuf[i], 1e-10));
        vnew += st[i] * n * step * step;
        st[i] = step;
    }
    double ratio = sqrt(vn) / std::max(sqrt(vnew), 1e-10), lr_eff = lr * sqrt(std::max(1.0, (double)rows / cols));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            int64_t i = r * cols + c;
            double x = u[i] * st[per_row ? r : c] * ratio, decay = x * p[i] >= 0 ? lr_eff * wd * p[i] : 0;
            p[i] -= lr_eff * x + decay;
        }
}

static void check_muon(int64_t K, int64_t rows, int64_t cols, int bf16) {
    int64_t size = rows * cols, m = rows >= cols ? rows : cols;
    auto p = randn(K * size, 0.1);
    std::vector<float> zeros(K * size, 0.f), zs(K * m, 0.f);
    std::vector<double> pr(p.begin(), p.end()), mr(K * size, 0), sr(K * m, 0), p0(p.begin(), p.end());
    Dev dp(p), dm(zeros), ds(zs);
    const float lr = 0.02f, wd = 0.2f, mu = 0.95f, beta2 = 0.9f;
    for (int step = 0; step < 2; step++) {
        auto g = randn(K * size);
        Dev dg(g);
        NC(nc_muon_step(ctx, dp.f(), dg.f(), dm.f(), ds.f(), K, rows, cols, lr, wd, mu, beta2, 5, bf16));
        for (int64_t k = 0; k < K; k++) {
            std::vector<double> pk(pr.begin() + k * size, pr.begin() + (k + 1) * size), mk(mr.begin() + k * size, mr.begin() + (k + 1) * size);
            std::vector<double> sk(sr.begin() + k * m, sr.begin() + (k + 1) * m);
            std::vector<float> gk(g.begin() + k * size, g.begin() + (k + 1) * size);
            muon_reference(pk, gk, mk, sk, rows, cols, lr, wd, mu, beta2, bf16 != 0);
            std::copy(pk.begin(), pk.end(), pr.begin() + k * size);
            std::copy(mk.begin(), mk.end(), mr.begin() + k * size);
            std::copy(sk.begin(), sk.end(), sr.begin() + k * m);
        }
    }
    auto got = dp.get<float>();
    std::vector<float> delta(K * size);
    std::vector<double> ref(K * size);
    for (int64_t i = 0; i < K * size; i++) { delta[i] = (float)(got[i] - p0[i]); ref[i] = pr[i] - p0[i]; }
    char name[96];
    snprintf(name, sizeof name, "muon %s two steps K%lld %lldx%lld: the update", bf16 ? "bf16" : "fp32", (long long)K,
             (long long)rows, (long long)cols);
    // bf16: the reference rounds the same operands, but where the device's fp32 and the reference's double differ
    // by a rounding, a bf16 rounding can flip (4e-3 of that element) and five polynomial iterations amplify it:
    // measured 5e-3 to 7e-3 on an H100, inside the 1e-2 that bf16 operands allow
    check(name, delta, ref, bf16 ? 1e-2 : 1e-4);
    snprintf(name, sizeof name, "muon %s K%lld %lldx%lld: second moment", bf16 ? "bf16" : "fp32", (long long)K,
             (long long)rows, (long long)cols);
    check(name, ds.get<float>(), sr, bf16 ? 1e-2 : 1e-4);
}

// attention at a model's shape, forward and backward, median of 5; TFLOP/s counts only the work the window needs
static void time_attention(int64_t B, int64_t T, int64_t H, int64_t D, int64_t window, bool bf16 = false) {
    int64_t n = B * T * H * D;
    auto x = randn(n);
    std::vector<float> z(n, 0.f);
    Dev q(x), k(x), v(x), o(nans(n)), l(nans(B * H * T)), g(x), dq(z), dk(z), dv(z), delta(nans(B * H * T));
    Dev x16(bf16_bits_of(x)), o16(bf16_nans(n));  // bf16: q, k and v all x's bits (the timing does not depend on them)
    auto fwdf = [&]() {
        return bf16 ? nc_attention_forward_bf16(ctx, o16.p, l.f(), x16.p, x16.p, x16.p, B, T, H, H, D, window)
                    : nc_attention_forward(ctx, o.f(), l.f(), q.f(), k.f(), v.f(), B, T, H, H, D, window);
    };
    auto bwdf = [&]() {
        // the training path's form: bf16 dout in, bf16 gradients out
        return bf16 ? nc_attention_backward_bf16(ctx, dq.p, dk.p, dv.p, 1, delta.f(), x16.p, x16.p, x16.p, o16.p, x16.p, 1, l.f(), B, T, H,
                                                 H, D, window, 0)
                    : nc_attention_backward(ctx, dq.f(), dk.f(), dv.f(), delta.f(), q.f(), k.f(), v.f(), o.f(), g.f(), l.f(), B, T, H, H, D,
                                            window, 0);
    };
    cudaEvent_t e0, e1, e2;
    cudaEventCreate(&e0); cudaEventCreate(&e1); cudaEventCreate(&e2);
    std::vector<float> fwd, bwd;
    for (int r = 0; r < 6; r++) {
        cudaEventRecord(e0, 0);
        NC(fwdf());
        NC(nc_synchronize(ctx));
        cudaEventRecord(e1, 0);
        NC(bwdf());
        NC(nc_synchronize(ctx));
        cudaEventRecord(e2, 0);
        cudaEventSynchronize(e2);
        float a, b2;
        cudaEventElapsedTime(&a, e0, e1);
        cudaEventElapsedTime(&b2, e1, e2);
        if (r > 0) { fwd.push_back(a); bwd.push_back(b2); }
    }
    std::sort(fwd.begin(), fwd.end());
    std::sort(bwd.begin(), bwd.end());
    // FLOPs actually needed (causal, windowed): forward 4 B H D sum_i keys(i), backward 2.5x that
    double keys = 0;
    for (int64_t i = 0; i < T; i++) keys += (i < window ? i : window) + 1;
    double flops = 4.0 * B * H * D * keys;
    printf("time attention %s B%lld T%lld H%lld D%lld window %lld: forward %.3f ms (%.0f TFLOP/s), backward %.3f ms (%.0f TFLOP/s)\n",
           bf16 ? bf16_backend : "fp32", (long long)B, (long long)T, (long long)H, (long long)D, (long long)window,
           fwd[fwd.size() / 2], flops / fwd[fwd.size() / 2] / 1e9, bwd[bwd.size() / 2], 2.5 * flops / bwd[bwd.size() / 2] / 1e9);
}

// Median time of `reps` products (events around each), TFLOP/s.
static void time_matmul(const char *what, int64_t m, int64_t n, int64_t k, int ta, int tb, int bf16) {
    auto a = randn(m * k), b = randn(k * n);
    Dev da(a), db(b), dc(nans(m * n));
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    for (int i = 0; i < 3; i++) NC(nc_matmul(ctx, dc.f(), da.f(), db.f(), m, n, k, ta, tb, 1, 0, bf16));
    NC(nc_synchronize(ctx));
    std::vector<float> ms;
    for (int i = 0; i < 20; i++) {
        cudaEventRecord(e0, 0);
        NC(nc_matmul(ctx, dc.f(), da.f(), db.f(), m, n, k, ta, tb, 1, 0, bf16));
        NC(nc_synchronize(ctx));
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        float t;
        cudaEventElapsedTime(&t, e0, e1);
        ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    double t = ms[ms.size() / 2] / 1e3;
    printf("time %-34s %6lldx%5lldx%5lld %s: %8.3f ms  %6.1f TFLOP/s\n", what, (long long)m, (long long)n, (long long)k,
           bf16 ? "bf16 (incl. rounding)" : "fp32", t * 1e3, 2.0 * m * n * k / t / 1e12);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
}

int main(int argc, char **argv) {
    bool timing = !(argc > 1 && strcmp(argv[1], "--no-timing") == 0);
    if (nc_create(&ctx, 0) != 0) {
        fprintf(stderr, "no CUDA device: %s\n", nc_error_string(ctx));
        return 1;
    }
    char name[128];
    int sms = 0;
    int64_t mem = 0;
    NC(nc_device_info(ctx, name, sizeof name, &sms, &mem));
    printf("device: %s, %d SMs, %.1f GiB\n", name, sms, mem / 1073741824.0);
    for (int bf16 = 0; bf16 <= 1; bf16++)
        for (int ta = 0; ta <= 1; ta++)
            for (int tb = 0; tb <= 1; tb++) check_matmul(67, 45, 33, ta, tb, bf16 ? 1.f : 0.5f, tb ? 1.f : 0.f, bf16);
    check_matmul(256, 768, 192, 0, 1, 1, 0, 0);
    check_matmul_mixed(67, 45, 33, 0, 1, 0);   // x W^T, the forward
    check_matmul_mixed(64, 48, 96, 0, 0, 1);   // dY W accumulated, the input gradient
    check_matmul_bf16_out(67, 128, 48, 0, 1);  // the logits x W^T, written in bf16
    check_matmul_bf16_out(33, 64, 40, 1, 0);
    check_rmsnorm(37, 768);
    check_rmsnorm(5, 100);
    check_rotary(2, 17, 3, 64, 0);
    check_rotary(1, 9, 2, 128, 40);
    check_relu2(100003);
    check_axpby_softcap(100003);
    check_classifier(19, 300, 320);
    check_classifier(7, 1000, 1024);
    check_adamw(10007);
    for (int bf16 = 0; bf16 <= 1; bf16++) {
        check_kv_cache(3, 1, 4, 2, 64, 40, 1000, bf16);  // decode steps, GQA, rows of different lengths
        check_kv_cache(2, 5, 6, 3, 128, 64, 7, bf16);    // a chunk with a window shorter than the span
        check_kv_cache(2, 1, 2, 2, 32, 300, 299, bf16);  // a window that ends exactly at position 0
    }
    check_gates();
    check_muon(3, 48, 16, 0);  // tall: per-row statistics, lr x 1.73
    check_muon(2, 16, 40, 0);  // wide: per-column statistics
    check_muon(2, 32, 32, 0);
    check_muon(3, 48, 16, 1);  // bf16 Polar Express products
    check_muon(2, 16, 40, 1);
    check_attention(2, 37, 4, 2, 32, 5);    // GQA, a window shorter than a tile
    check_attention(2, 70, 2, 1, 64, 100);  // window past T: plain causal
    check_attention(1, 150, 2, 2, 128, 40);
    check_attention(1, 33, 6, 3, 128, 7);
    // the bf16 path with each attention this library has: the WMMA kernels, and cuDNN's when libnanochat_cudnn.so loaded
    char backend[256];
    NC(nc_attention_backend(ctx, backend, sizeof backend));
    printf("bf16 attention: %s\n", backend);
    int has_cudnn = nc_attention_select(ctx, 1) == 0;
    for (int use = 0; use <= has_cudnn; use++) {
        NC(nc_attention_select(ctx, use));
        bf16_backend = use ? "bf16 cuDNN" : "bf16 WMMA";
        check_attention(2, 37, 4, 2, 64, 5, true);      // GQA, a window shorter than a tile
        check_attention(2, 70, 2, 1, 64, 100, true);    // window past T: plain causal, a partial second tile
        check_attention(1, 150, 2, 2, 128, 40, true);
        check_attention(1, 200, 6, 3, 128, 7, true);
        check_attention(1, 320, 2, 2, 128, 320, true);  // five full tiles, causal
        check_attention(2, 256, 4, 4, 128, 64, true);   // a window that ends on a tile boundary
        check_attention(1, 130, 2, 2, 128, 128, true);  // window w = T - 2: the band's edge, w + 1 keys
        check_attention(1, 129, 2, 2, 64, 128, true);   // window w = T - 1: every key (plain causal)
        check_attention(1, 100, 2, 1, 64, 63, true);    // w + 1 = 64 keys: a window of exactly one tile
    }
    NC(nc_attention_select(ctx, has_cudnn));
    if (timing) {
        // d12 / d20 at device batch 32 x 2048 tokens: c_fc forward, its weight gradient, lm_head forward
        time_matmul("d12 c_fc forward (x W^T)", 65536, 3072, 768, 0, 1, 1);
        time_matmul("d12 c_fc weight grad (dY^T X)", 3072, 768, 65536, 1, 0, 1);
        time_matmul("d20 c_fc forward (x W^T)", 65536, 5120, 1280, 0, 1, 1);
        time_matmul("d20 lm_head forward (x W^T)", 65536, 32768, 1280, 0, 1, 1);
        time_matmul("d12 c_fc forward (x W^T)", 65536, 3072, 768, 0, 1, 0);
        for (int use = 0; use <= has_cudnn; use++) {  // both attentions, side by side
            NC(nc_attention_select(ctx, use));
            bf16_backend = use ? "bf16 cuDNN" : "bf16 WMMA";
            time_attention(32, 2048, 6, 128, 2048, true);  // d12's shape, full context and the S window
            time_attention(32, 2048, 6, 128, 768, true);
            time_attention(32, 2048, 10, 128, 2048, true);  // d20's
            time_attention(32, 2048, 10, 128, 768, true);
        }
        NC(nc_attention_select(ctx, has_cudnn));
    }
    nc_destroy(ctx);
    printf("\n%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
