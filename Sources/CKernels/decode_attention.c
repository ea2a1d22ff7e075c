// Attention of one query row against the KV cache (see ckernels.h), the inner loop of cached decoding. A decode
// step of d12 attends 12 heads x 12 layers over a few hundred positions; written as a dot product and a scaled add
// per position (Swift SIMD8 helpers) it took 1.5 ms of a 12 ms int8 decode step, ten times its arithmetic.
// Here four keys are scored at once (four independent accumulators), the exponentials are vectorized, and the
// weighted sum of values keeps 64 output dimensions in registers while it walks the positions.
// Keys and values come in float32 or in bf16 (the cache of a model decoding with bf16 or int8 weights: half the bytes
// to stream, and at a few hundred positions the cache is as large as a tenth of d12's int8 weights). One body serves
// both: each load widens bf16 to float32 in registers, and the compiler specializes the body per format.
#include "ckernels.h"

#include <math.h>
#include <string.h>

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

// element i of a key or value run, float32 or bf16 (the upper half of a float32)
static inline float kv_at(const void *p, long i, int bf16) {
    if (!bf16) return ((const float *)p)[i];
    uint32_t u = (uint32_t)((const uint16_t *)p)[i] << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void attend_portable(const float *q, const void *k, const void *v, int bf16, int span, int d, float scale,
                            float *scores, float *out) {
    for (int j = 0; j < span; j++) {
        float s = 0;
        for (int t = 0; t < d; t++) s += q[t] * kv_at(k, (long)j * d + t, bf16);
        scores[j] = s * scale;
    }
    float inv = 1 / softmax_numerators(scores, span);
    for (int t = 0; t < d; t++) out[t] = 0;
    for (int j = 0; j < span; j++) {
        float p = scores[j] * inv;
        for (int t = 0; t < d; t++) out[t] += p * kv_at(v, (long)j * d + t, bf16);
    }
}

#ifdef NC_X86
// eight keys' or values' elements from i on, widened to float32
__attribute__((target("avx2,fma"), always_inline)) static inline __m256 kv_load8(const void *p, long i, int bf16) {
    if (!bf16) return _mm256_loadu_ps((const float *)p + i);
    __m256i x = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(x, 16));
}

// d a multiple of 8; always inlined into one caller per format, so `bf16` is a constant there
__attribute__((target("avx2,fma"), always_inline)) static inline void attend_avx2(const float *q, const void *k, const void *v,
                                                                                int bf16, int span, int d, float scale,
                                                                                float *scores, float *out) {
    int j = 0;
    for (; j + 4 <= span; j += 4) {
        const long r0 = (long)j * d, r1 = r0 + d, r2 = r1 + d, r3 = r2 + d;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int t = 0; t < d; t += 8) {
            __m256 x = _mm256_loadu_ps(q + t);
            a0 = _mm256_fmadd_ps(x, kv_load8(k, r0 + t, bf16), a0);
            a1 = _mm256_fmadd_ps(x, kv_load8(k, r1 + t, bf16), a1);
            a2 = _mm256_fmadd_ps(x, kv_load8(k, r2 + t, bf16), a2);
            a3 = _mm256_fmadd_ps(x, kv_load8(k, r3 + t, bf16), a3);
        }
        scores[j] = nc_hsum8(a0) * scale;
        scores[j + 1] = nc_hsum8(a1) * scale;
        scores[j + 2] = nc_hsum8(a2) * scale;
        scores[j + 3] = nc_hsum8(a3) * scale;
    }
    for (; j < span; j++) {
        __m256 a0 = _mm256_setzero_ps();
        for (int t = 0; t < d; t += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + t), kv_load8(k, (long)j * d + t, bf16), a0);
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
                const long vr = (long)jj * d + t0;
                for (int c = 0; c < 8; c++) o[c] = _mm256_fmadd_ps(p, kv_load8(v, vr + 8 * c, bf16), o[c]);
            }
        } else {
            for (int jj = 0; jj < span; jj++) {
                __m256 p = _mm256_set1_ps(scores[jj]);
                const long vr = (long)jj * d + t0;
                for (int c = 0; c < width / 8; c++) o[c] = _mm256_fmadd_ps(p, kv_load8(v, vr + 8 * c, bf16), o[c]);
            }
        }
        __m256 s = _mm256_set1_ps(inv);
        for (int c = 0; c < width / 8; c++) _mm256_storeu_ps(out + t0 + 8 * c, _mm256_mul_ps(o[c], s));
    }
}

__attribute__((target("avx2,fma"))) static void attend_avx2_f32(const float *q, const float *k, const float *v, int span,
                                                              int d, float scale, float *scores, float *out) {
    attend_avx2(q, k, v, 0, span, d, scale, scores, out);
}

__attribute__((target("avx2,fma"))) static void attend_avx2_bf16(const float *q, const uint16_t *k, const uint16_t *v,
                                                               int span, int d, float scale, float *scores, float *out) {
    attend_avx2(q, k, v, 1, span, d, scale, scores, out);
}
#endif

void nc_attend_one(const float *q, const float *k, const float *v, int span, int d, float scale, float *scores, float *out) {
#ifdef NC_X86
    if (d % 8 == 0 && nc_kernel_level() >= 1) {
        attend_avx2_f32(q, k, v, span, d, scale, scores, out);
        return;
    }
#endif
    attend_portable(q, k, v, 0, span, d, scale, scores, out);
}

void nc_attend_one_bf16(const float *q, const uint16_t *k, const uint16_t *v, int span, int d, float scale, float *scores,
                        float *out) {
#ifdef NC_X86
    if (d % 8 == 0 && nc_kernel_level() >= 1) {
        attend_avx2_bf16(q, k, v, span, d, scale, scores, out);
        return;
    }
#endif
    attend_portable(q, k, v, 1, span, d, scale, scores, out);
}
