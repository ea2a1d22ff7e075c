// Attention of one query row against the KV cache (see ckernels.h), the inner loop of cached decoding. A decode
// step of d12 attends 12 heads x 12 layers over a few hundred positions; written as a dot product and a scaled add
// per position (Swift SIMD8 helpers) it took 1.5 ms of a 12 ms int8 decode step, ten times its arithmetic.
// Here four keys are scored at once (four independent accumulators), the exponentials are vectorized, and the
// weighted sum of values keeps 64 output dimensions in registers while it walks the positions.
#include "ckernels.h"

#include <math.h>

#include "x86_simd.h"

// max-subtracted exponentials of scores[0..<span) in place; returns their sum
static float softmax_numerators(float *scores, int span) {
    float m = -INFINITY;
    for (int j = 0; j < span; j++) m = scores[j] > m ? scores[j] : m;
    float sum = 0;
    for (int j = 0; j < span; j++) {
        scores[j] = expf(scores[j] - m);
        sum += scores[j];
    }
    return sum;
}

static void attend_portable(const float *q, const float *k, const float *v, int span, int d, float scale,
                            float *scores, float *out) {
    for (int j = 0; j < span; j++) {
        float s = 0;
        for (int t = 0; t < d; t++) s += q[t] * k[(long)j * d + t];
        scores[j] = s * scale;
    }
    float inv = 1 / softmax_numerators(scores, span);
    for (int t = 0; t < d; t++) out[t] = 0;
    for (int j = 0; j < span; j++) {
        float p = scores[j] * inv;
        for (int t = 0; t < d; t++) out[t] += p * v[(long)j * d + t];
    }
}

#ifdef NC_X86
// d a multiple of 8
__attribute__((target("avx2,fma"))) static void attend_avx2(const float *q, const float *k, const float *v, int span,
                                                          int d, float scale, float *scores, float *out) {
    int j = 0;
    for (; j + 4 <= span; j += 4) {
        const float *k0 = k + (long)j * d, *k1 = k0 + d, *k2 = k1 + d, *k3 = k2 + d;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int t = 0; t < d; t += 8) {
            __m256 x = _mm256_loadu_ps(q + t);
            a0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(k0 + t), a0);
            a1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(k1 + t), a1);
            a2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(k2 + t), a2);
            a3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(k3 + t), a3);
        }
        scores[j] = nc_hsum8(a0) * scale;
        scores[j + 1] = nc_hsum8(a1) * scale;
        scores[j + 2] = nc_hsum8(a2) * scale;
        scores[j + 3] = nc_hsum8(a3) * scale;
    }
    for (; j < span; j++) {
        __m256 a0 = _mm256_setzero_ps();
        for (int t = 0; t < d; t += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + t), _mm256_loadu_ps(k + (long)j * d + t), a0);
        scores[j] = nc_hsum8(a0) * scale;
    }
    // softmax numerators, eight at a time
    __m256 mv = _mm256_set1_ps(-INFINITY);
    int j8 = span - span % 8;
    for (int jj = 0; jj < j8; jj += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(scores + jj));
    float m = -INFINITY;
    for (int jj = j8; jj < span; jj++) m = scores[jj] > m ? scores[jj] : m;
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mv), _mm256_extractf128_ps(mv, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    m = _mm_cvtss_f32(m4) > m ? _mm_cvtss_f32(m4) : m;
    __m256 sv = _mm256_setzero_ps(), mb = _mm256_set1_ps(m);
    for (int jj = 0; jj < j8; jj += 8) {
        __m256 e = nc_exp8(_mm256_sub_ps(_mm256_loadu_ps(scores + jj), mb));
        _mm256_storeu_ps(scores + jj, e);
        sv = _mm256_add_ps(sv, e);
    }
    float sum = nc_hsum8(sv);
    for (int jj = j8; jj < span; jj++) {
        scores[jj] = expf(scores[jj] - m);
        sum += scores[jj];
    }
    float inv = 1 / sum;
    // out = sum_j p_j v_j, 64 dimensions (eight registers) per pass over the positions
    for (int t0 = 0; t0 < d; t0 += 64) {
        int width = d - t0 < 64 ? d - t0 : 64;
        __m256 o[8];
        for (int c = 0; c < 8; c++) o[c] = _mm256_setzero_ps();
        if (width == 64) {
            for (int jj = 0; jj < span; jj++) {
                __m256 p = _mm256_set1_ps(scores[jj]);
                const float *vr = v + (long)jj * d + t0;
                for (int c = 0; c < 8; c++) o[c] = _mm256_fmadd_ps(p, _mm256_loadu_ps(vr + 8 * c), o[c]);
            }
        } else {
            for (int jj = 0; jj < span; jj++) {
                __m256 p = _mm256_set1_ps(scores[jj]);
                const float *vr = v + (long)jj * d + t0;
                for (int c = 0; c < width / 8; c++) o[c] = _mm256_fmadd_ps(p, _mm256_loadu_ps(vr + 8 * c), o[c]);
            }
        }
        __m256 s = _mm256_set1_ps(inv);
        for (int c = 0; c < width / 8; c++) _mm256_storeu_ps(out + t0 + 8 * c, _mm256_mul_ps(o[c], s));
    }
}
#endif

void nc_attend_one(const float *q, const float *k, const float *v, int span, int d, float scale, float *scores, float *out) {
#ifdef NC_X86
    if (d % 8 == 0 && nc_quant_uses_avx2() && !nc_quant_force_portable) {
        attend_avx2(q, k, v, span, d, scale, scores, out);
        return;
    }
#endif
    attend_portable(q, k, v, span, d, scale, scores, out);
}
