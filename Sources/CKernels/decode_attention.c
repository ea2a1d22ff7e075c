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

// sixteen keys' or values' elements from i on, widened to float32
__attribute__((target("avx512f"), always_inline)) static inline __m512 kv_load16(const void *p, long i, int bf16) {
    if (!bf16) return _mm512_loadu_ps((const float *)p + i);
    __m512i x = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
}

// One body for both widths: W bits per vector (256: AVX2, 512: AVX-512), L = W / 32 lanes, d a multiple of L.
// Always inlined into one caller per format and width, so `bf16` is a constant there. The weighted sum of values
// keeps 8 vectors of output in registers per pass over the positions: 64 dimensions with AVX2, 128 with AVX-512.
#define NC_ATTEND_BODY(W, LOADKV, HSUM, HMAX, EXP)                                                                   \
    const int L = W / 32;                                                                                             \
    int j = 0;                                                                                                        \
    for (; j + 4 <= span; j += 4) {                                                                                   \
        const long r0 = (long)j * d, r1 = r0 + d, r2 = r1 + d, r3 = r2 + d;                                           \
        __m##W a0 = _mm##W##_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                                 \
        for (int t = 0; t < d; t += L) {                                                                              \
            __m##W x = _mm##W##_loadu_ps(q + t);                                                                      \
            a0 = _mm##W##_fmadd_ps(x, LOADKV(k, r0 + t, bf16), a0);                                                   \
            a1 = _mm##W##_fmadd_ps(x, LOADKV(k, r1 + t, bf16), a1);                                                   \
            a2 = _mm##W##_fmadd_ps(x, LOADKV(k, r2 + t, bf16), a2);                                                   \
            a3 = _mm##W##_fmadd_ps(x, LOADKV(k, r3 + t, bf16), a3);                                                   \
        }                                                                                                             \
        scores[j] = HSUM(a0) * scale;                                                                                 \
        scores[j + 1] = HSUM(a1) * scale;                                                                             \
        scores[j + 2] = HSUM(a2) * scale;                                                                             \
        scores[j + 3] = HSUM(a3) * scale;                                                                             \
    }                                                                                                                 \
    for (; j < span; j++) {                                                                                           \
        __m##W a0 = _mm##W##_setzero_ps();                                                                            \
        for (int t = 0; t < d; t += L) a0 = _mm##W##_fmadd_ps(_mm##W##_loadu_ps(q + t), LOADKV(k, (long)j * d + t, bf16), a0); \
        scores[j] = HSUM(a0) * scale;                                                                                 \
    }                                                                                                                 \
    /* softmax numerators, L at a time */                                                                             \
    __m##W mv = _mm##W##_set1_ps(-INFINITY);                                                                          \
    int jv = span - span % L;                                                                                         \
    for (int jj = 0; jj < jv; jj += L) mv = _mm##W##_max_ps(mv, _mm##W##_loadu_ps(scores + jj));                      \
    float m = HMAX(mv);                                                                                               \
    for (int jj = jv; jj < span; jj++) m = scores[jj] > m ? scores[jj] : m;                                           \
    __m##W sv = _mm##W##_setzero_ps(), mb = _mm##W##_set1_ps(m);                                                      \
    for (int jj = 0; jj < jv; jj += L) {                                                                              \
        __m##W e = EXP(_mm##W##_sub_ps(_mm##W##_loadu_ps(scores + jj), mb));                                          \
        _mm##W##_storeu_ps(scores + jj, e);                                                                           \
        sv = _mm##W##_add_ps(sv, e);                                                                                  \
    }                                                                                                                 \
    float sum = HSUM(sv);                                                                                             \
    for (int jj = jv; jj < span; jj++) {                                                                              \
        scores[jj] = expf(scores[jj] - m);                                                                            \
        sum += scores[jj];                                                                                            \
    }                                                                                                                 \
    float inv = 1 / sum;                                                                                              \
    /* out = sum_j p_j v_j, 8 L dimensions (eight registers) per pass over the positions */                           \
    for (int t0 = 0; t0 < d; t0 += 8 * L) {                                                                           \
        int width = d - t0 < 8 * L ? d - t0 : 8 * L;                                                                  \
        __m##W o[8];                                                                                                  \
        for (int c = 0; c < 8; c++) o[c] = _mm##W##_setzero_ps();                                                     \
        if (width == 8 * L) {                                                                                         \
            for (int jj = 0; jj < span; jj++) {                                                                       \
                __m##W p = _mm##W##_set1_ps(scores[jj]);                                                              \
                const long vr = (long)jj * d + t0;                                                                    \
                for (int c = 0; c < 8; c++) o[c] = _mm##W##_fmadd_ps(p, LOADKV(v, vr + L * c, bf16), o[c]);           \
            }                                                                                                         \
        } else {                                                                                                      \
            for (int jj = 0; jj < span; jj++) {                                                                       \
                __m##W p = _mm##W##_set1_ps(scores[jj]);                                                              \
                const long vr = (long)jj * d + t0;                                                                    \
                for (int c = 0; c < width / L; c++) o[c] = _mm##W##_fmadd_ps(p, LOADKV(v, vr + L * c, bf16), o[c]);   \
            }                                                                                                         \
        }                                                                                                             \
        __m##W s = _mm##W##_set1_ps(inv);                                                                             \
        for (int c = 0; c < width / L; c++) _mm##W##_storeu_ps(out + t0 + L * c, _mm##W##_mul_ps(o[c], s));           \
    }

__attribute__((target("avx2,fma"), always_inline)) static inline void attend_avx2(const float *q, const void *k, const void *v,
                                                                                int bf16, int span, int d, float scale,
                                                                                float *scores, float *out) {
    NC_ATTEND_BODY(256, kv_load8, nc_hsum8, nc_hmax8, nc_exp8)
}

__attribute__((target("avx512f,avx512dq,fma"), always_inline)) static inline void attend_avx512(
    const float *q, const void *k, const void *v, int bf16, int span, int d, float scale, float *scores, float *out) {
    NC_ATTEND_BODY(512, kv_load16, _mm512_reduce_add_ps, _mm512_reduce_max_ps, nc_exp16)
}

__attribute__((target("avx512f,avx512dq,fma"))) static void attend_avx512_f32(const float *q, const float *k, const float *v,
                                                                           int span, int d, float scale, float *scores, float *out) {
    attend_avx512(q, k, v, 0, span, d, scale, scores, out);
}

__attribute__((target("avx512f,avx512dq,fma"))) static void attend_avx512_bf16(const float *q, const uint16_t *k, const uint16_t *v,
                                                                            int span, int d, float scale, float *scores, float *out) {
    attend_avx512(q, k, v, 1, span, d, scale, scores, out);
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
    if (d % 16 == 0 && nc_kernel_level() >= 2) {
        attend_avx512_f32(q, k, v, span, d, scale, scores, out);
        return;
    }
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
    if (d % 16 == 0 && nc_kernel_level() >= 2) {
        attend_avx512_bf16(q, k, v, span, d, scale, scores, out);
        return;
    }
    if (d % 8 == 0 && nc_kernel_level() >= 1) {
        attend_avx2_bf16(q, k, v, span, d, scale, scores, out);
        return;
    }
#endif
    attend_portable(q, k, v, 1, span, d, scale, scores, out);
}
