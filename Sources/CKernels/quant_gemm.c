// Products against quantized weight matrices for inference (see ckernels.h): bf16 (the upper half of each float)
// and int8 with one float scale per block of 32 weights (llama.cpp's q8_0 layout, scales kept apart). Decoding reads
// every weight once per token, so fewer bytes per weight is the speed: 2 (bf16) or 1.125 (int8) instead of 4.
// The activations stay float32; each weight is widened to float32 in registers and multiplied there, so a product
// computes exactly sum(a * dequantized(w)) up to the order of the additions.
// One row against int8 weights (decoding one sequence, the case where bytes per weight matter most) is different:
// widening each weight costs three instructions per 8 weights (sign-extend, convert, multiply-add), which held one
// core to 13 GB/s of weights even from cache. There the activations are rounded to int16 once (one scale per block
// of 32, as the weights: 2^-16 of the block's largest value, 256x finer than the weights' own rounding) and each
// block's dot product is done in integers, exactly: 16 weights sign-extended to int16 and multiplied in pairs by one
// madd, then converted and scaled once per block. 1.2-1.8x less time per weight (measured, one core, from cache).
// With more rows the widening is shared between them and the float path is faster (integers measured 0.7-0.95x).
#include "ckernels.h"

#include <math.h>
#include <string.h>

#include "x86_simd.h"

static inline float bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t nc_float_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // NaN stays NaN
    u += 0x7fffu + ((u >> 16) & 1);  // round to nearest, ties to even
    return (uint16_t)(u >> 16);
}

void nc_quantize_bf16(const float *w, uint16_t *out, long count) {
    for (long i = 0; i < count; i++) out[i] = nc_float_to_bf16(w[i]);
}

void nc_quantize_q8(const float *w, int n, int k, int8_t *q, float *scales) {
    const int blocks = k / NC_Q8_BLOCK;
    for (int j = 0; j < n; j++)
        for (int b = 0; b < blocks; b++) {
            const float *x = w + (long)j * k + b * NC_Q8_BLOCK;
            float amax = 0;
            for (int t = 0; t < NC_Q8_BLOCK; t++) amax = fmaxf(amax, fabsf(x[t]));
            float s = amax / 127.f, inv = s > 0 ? 1.f / s : 0.f;
            scales[(long)j * blocks + b] = s;
            for (int t = 0; t < NC_Q8_BLOCK; t++) {
                float v = roundf(x[t] * inv);
                q[(long)j * k + b * NC_Q8_BLOCK + t] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
            }
        }
}

void nc_dequant_bf16(const uint16_t *w, long count, float *out) {
    for (long i = 0; i < count; i++) out[i] = bf16_to_float(w[i]);
}

void nc_dequant_q8(const int8_t *q, const float *scales, int n, int k, float *out) {
    const int blocks = k / NC_Q8_BLOCK;
    for (int j = 0; j < n; j++)
        for (int b = 0; b < blocks; b++) {
            float s = scales[(long)j * blocks + b];
            for (int t = 0; t < NC_Q8_BLOCK; t++) out[(long)j * k + b * NC_Q8_BLOCK + t] = s * q[(long)j * k + b * NC_Q8_BLOCK + t];
        }
}

// --- portable paths: one row of A against one weight row at a time
static void bf16_portable(int m, int n, int k, const float *a, int lda, const uint16_t *w, float *c, int ldc) {
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            const float *ai = a + (long)i * lda;
            const uint16_t *wj = w + (long)j * k;
            float s0 = 0, s1 = 0;
            int t = 0;
            for (; t + 2 <= k; t += 2) { s0 += ai[t] * bf16_to_float(wj[t]); s1 += ai[t + 1] * bf16_to_float(wj[t + 1]); }
            for (; t < k; t++) s0 += ai[t] * bf16_to_float(wj[t]);
            c[(long)i * ldc + j] = s0 + s1;
        }
}

static void q8_portable(int m, int n, int k, const float *a, int lda, const int8_t *q, const float *scales, float *c, int ldc) {
    const int blocks = k / NC_Q8_BLOCK;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            const float *ai = a + (long)i * lda;
            float total = 0;
            for (int b = 0; b < blocks; b++) {
                const int8_t *qb = q + (long)j * k + b * NC_Q8_BLOCK;
                const float *ab = ai + b * NC_Q8_BLOCK;
                float s = 0;
                for (int t = 0; t < NC_Q8_BLOCK; t++) s += ab[t] * qb[t];
                total += s * scales[(long)j * blocks + b];
            }
            c[(long)i * ldc + j] = total;
        }
}

// one row as int16: each block's integer dot product is exact (|sum| < 32 * 32767 * 127 < 2^31), then scaled
static void q8_a16_portable(int n, int k, const int16_t *xq, const float *xs, const int8_t *q, const float *scales, float *c) {
    const int blocks = k / NC_Q8_BLOCK;
    for (int j = 0; j < n; j++) {
        float total = 0;
        for (int b = 0; b < blocks; b++) {
            const int8_t *qb = q + (long)j * k + b * NC_Q8_BLOCK;
            int32_t s = 0;
            for (int t = 0; t < NC_Q8_BLOCK; t++) s += (int32_t)xq[b * NC_Q8_BLOCK + t] * qb[t];
            total += (float)s * (xs[b] * scales[(long)j * blocks + b]);
        }
        c[j] = total;
    }
}

static void quantize_a16_block(const float *x, int16_t *xq, float *xs) {
    float amax = 0;
    for (int t = 0; t < NC_Q8_BLOCK; t++) {
        float v = fabsf(x[t]);
        amax = v > amax || v != v ? v : amax;  // a NaN or infinity makes the scale NaN or infinite: it shows
    }
    float s = amax / 32767.f, inv = s > 0 && s < INFINITY ? 1.f / s : 0.f;
    *xs = s;
    for (int t = 0; t < NC_Q8_BLOCK; t++) {
        float v = rintf(x[t] * inv);
        xq[t] = (int16_t)(v > 32767 ? 32767 : v < -32767 ? -32767 : v);
    }
}

#ifdef NC_X86
// the same rounding with vectors: round to nearest even (the default rounding mode, as rintf), |x * inv| <= 32767
__attribute__((target("avx2,fma"))) static void quantize_a16_block_avx2(const float *x, int16_t *xq, float *xs) {
    const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, absMask), _mm256_and_ps(v1, absMask)),
                             _mm256_max_ps(_mm256_and_ps(v2, absMask), _mm256_and_ps(v3, absMask)));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    float amax = _mm_cvtss_f32(h);
    __m256 nan = _mm256_or_ps(_mm256_or_ps(_mm256_cmp_ps(v0, v0, _CMP_UNORD_Q), _mm256_cmp_ps(v1, v1, _CMP_UNORD_Q)),
                              _mm256_or_ps(_mm256_cmp_ps(v2, v2, _CMP_UNORD_Q), _mm256_cmp_ps(v3, v3, _CMP_UNORD_Q)));
    if (!(amax < INFINITY) || _mm256_movemask_ps(nan)) {  // an infinity or a NaN (max_ps may drop it): the scalar
        quantize_a16_block(x, xq, xs);                    // path gives the block a scale that shows it
        return;
    }
    float s = amax / 32767.f;
    *xs = s;
    const __m256 inv = _mm256_set1_ps(s > 0 ? 1.f / s : 0.f);
    __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, inv)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, inv));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, inv)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, inv));
    // packs works within 128-bit lanes: permute the quadwords back into order
    __m256i p01 = _mm256_permute4x64_epi64(_mm256_packs_epi32(i0, i1), 0xD8), p23 = _mm256_permute4x64_epi64(_mm256_packs_epi32(i2, i3), 0xD8);
    _mm256_storeu_si256((__m256i *)xq, p01);
    _mm256_storeu_si256((__m256i *)(xq + 16), p23);
}
#endif

void nc_quantize_a16(int m, int k, const float *a, int lda, int16_t *xq, float *xs) {
    void (*block)(const float *, int16_t *, float *) = quantize_a16_block;
#ifdef NC_X86
    if (nc_kernel_level() >= 1) block = quantize_a16_block_avx2;
#endif
    const int blocks = k / NC_Q8_BLOCK;
    for (int i = 0; i < m; i++)
        for (int b = 0; b < blocks; b++)
            block(a + (long)i * lda + b * NC_Q8_BLOCK, xq + (long)i * k + b * NC_Q8_BLOCK, xs + (long)i * blocks + b);
}

#ifdef NC_X86

__attribute__((target("avx2,fma"))) static inline __m256 load_bf16(const uint16_t *p) {
    __m256i x = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(x, 16));
}

__attribute__((target("avx2,fma"))) static inline __m256 load_q8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

// Two weight rows (j, j + 1; w1 == w0 when only one) against up to four rows of A: eight accumulators. Each weight
// row is widened once per 8 values and reused for every row of A, so the bytes of W are read once for all m rows.
// k8: the multiple of 8 done with vectors; the tail goes through the scalar loop.
#define TILE_BODY(LOAD0, LOAD1)                                                                              \
    __m256 w0v = LOAD0, w1v = LOAD1, x;                                                                     \
    x = _mm256_loadu_ps(a0 + t); acc00 = _mm256_fmadd_ps(w0v, x, acc00); acc10 = _mm256_fmadd_ps(w1v, x, acc10); \
    x = _mm256_loadu_ps(a1 + t); acc01 = _mm256_fmadd_ps(w0v, x, acc01); acc11 = _mm256_fmadd_ps(w1v, x, acc11); \
    x = _mm256_loadu_ps(a2 + t); acc02 = _mm256_fmadd_ps(w0v, x, acc02); acc12 = _mm256_fmadd_ps(w1v, x, acc12); \
    x = _mm256_loadu_ps(a3 + t); acc03 = _mm256_fmadd_ps(w0v, x, acc03); acc13 = _mm256_fmadd_ps(w1v, x, acc13);

__attribute__((target("avx2,fma"))) static void bf16_tile(int mi, int two, int k, const float *a, int lda,
                                                        const uint16_t *w0, const uint16_t *w1, float *c, int ldc) {
    const float *a0 = a, *a1 = a + (mi > 1 ? lda : 0), *a2 = a + (mi > 2 ? 2L * lda : 0), *a3 = a + (mi > 3 ? 3L * lda : 0);
    __m256 acc00 = _mm256_setzero_ps(), acc01 = acc00, acc02 = acc00, acc03 = acc00;
    __m256 acc10 = acc00, acc11 = acc00, acc12 = acc00, acc13 = acc00;
    const char *next = (const char *)(w0 + 2L * k);  // the next pair of rows (contiguous), 32 bytes per step
    int t = 0;
    for (; t + 8 <= k; t += 8) {
        if (!(t & 8)) _mm_prefetch(next + 4L * t, _MM_HINT_T0);
        TILE_BODY(load_bf16(w0 + t), load_bf16(w1 + t))
    }
    float s[2][4] = {{nc_hsum8(acc00), nc_hsum8(acc01), nc_hsum8(acc02), nc_hsum8(acc03)}, {nc_hsum8(acc10), nc_hsum8(acc11), nc_hsum8(acc12), nc_hsum8(acc13)}};
    const float *rows[4] = {a0, a1, a2, a3};
    for (int r = 0; r < mi; r++) {
        for (int u = t; u < k; u++) { s[0][r] += rows[r][u] * bf16_to_float(w0[u]); s[1][r] += rows[r][u] * bf16_to_float(w1[u]); }
        c[(long)r * ldc] = s[0][r];
        if (two) c[(long)r * ldc + 1] = s[1][r];
    }
}

// int8: each block of 32 widened and multiplied by its scale once, then used for every row of A
__attribute__((target("avx2,fma"))) static void q8_tile(int mi, int two, int k, const float *a, int lda, const int8_t *q0,
                                                      const int8_t *q1, const float *s0, const float *s1, float *c, int ldc) {
    const float *a0 = a, *a1 = a + (mi > 1 ? lda : 0), *a2 = a + (mi > 2 ? 2L * lda : 0), *a3 = a + (mi > 3 ? 3L * lda : 0);
    __m256 acc00 = _mm256_setzero_ps(), acc01 = acc00, acc02 = acc00, acc03 = acc00;
    __m256 acc10 = acc00, acc11 = acc00, acc12 = acc00, acc13 = acc00;
    const int blocks = k / NC_Q8_BLOCK;
    const char *next = (const char *)(q0 + 2L * k);  // the next pair of rows: 64 bytes per block
    for (int b = 0; b < blocks; b++) {
        _mm_prefetch(next + 64L * b, _MM_HINT_T0);
        __m256 sc0 = _mm256_set1_ps(s0[b]), sc1 = _mm256_set1_ps(s1[b]);
        for (int t = b * NC_Q8_BLOCK; t < (b + 1) * NC_Q8_BLOCK; t += 8) {
            TILE_BODY(_mm256_mul_ps(load_q8(q0 + t), sc0), _mm256_mul_ps(load_q8(q1 + t), sc1))
        }
    }
    float s[2][4] = {{nc_hsum8(acc00), nc_hsum8(acc01), nc_hsum8(acc02), nc_hsum8(acc03)}, {nc_hsum8(acc10), nc_hsum8(acc11), nc_hsum8(acc12), nc_hsum8(acc13)}};
    for (int r = 0; r < mi; r++) {
        c[(long)r * ldc] = s[0][r];
        if (two) c[(long)r * ldc + 1] = s[1][r];
    }
}

// Prefetching: every kernel below reads its weight rows as one contiguous stretch (rows j, j + 1, ... side by side)
// and asks for the next stretch's cache lines while it computes on this one. The hardware prefetcher alone loses
// track of four interleaved 768-byte rows; with the hint one core streams int8 weights from DRAM at 11-14 GB/s
// instead of 6 (measured on the 2-core development machine). Prefetching past the matrix's end is harmless.

// One or two rows of A against four weight rows (the first nb real; the others repeat row 0): decoding one sequence
// would waste three quarters of a 4-row tile's multiply-adds.
#define NARROW_BODY(W0, W1, W2, W3)                                                                         \
    __m256 x0 = _mm256_loadu_ps(a0 + t), x1 = _mm256_loadu_ps(a1 + t), w;                                    \
    w = W0; b00 = _mm256_fmadd_ps(w, x0, b00); b01 = _mm256_fmadd_ps(w, x1, b01);                            \
    w = W1; b10 = _mm256_fmadd_ps(w, x0, b10); b11 = _mm256_fmadd_ps(w, x1, b11);                            \
    w = W2; b20 = _mm256_fmadd_ps(w, x0, b20); b21 = _mm256_fmadd_ps(w, x1, b21);                            \
    w = W3; b30 = _mm256_fmadd_ps(w, x0, b30); b31 = _mm256_fmadd_ps(w, x1, b31);

__attribute__((target("avx2,fma"))) static void bf16_narrow(int mi, int nb, int k, const float *a, int lda,
                                                          const uint16_t *const ws[4], float *c, int ldc) {
    const float *a0 = a, *a1 = a + (mi > 1 ? lda : 0);
    const uint16_t *w0 = ws[0], *w1 = ws[1], *w2 = ws[2], *w3 = ws[3];
    __m256 b00 = _mm256_setzero_ps(), b01 = b00, b10 = b00, b11 = b00, b20 = b00, b21 = b00, b30 = b00, b31 = b00;
    const char *next = (const char *)(w0 + 4L * k);  // the next four rows (contiguous): 64 bytes per step
    int t = 0;
    for (; t + 8 <= k; t += 8) {
        _mm_prefetch(next + 8L * t, _MM_HINT_T0);
        NARROW_BODY(load_bf16(w0 + t), load_bf16(w1 + t), load_bf16(w2 + t), load_bf16(w3 + t))
    }
    float s[4][2] = {{nc_hsum8(b00), nc_hsum8(b01)}, {nc_hsum8(b10), nc_hsum8(b11)}, {nc_hsum8(b20), nc_hsum8(b21)}, {nc_hsum8(b30), nc_hsum8(b31)}};
    const float *rows[2] = {a0, a1};
    for (int r = 0; r < mi; r++)
        for (int q = 0; q < nb; q++) {
            float v = s[q][r];
            for (int u = t; u < k; u++) v += rows[r][u] * bf16_to_float(ws[q][u]);
            c[(long)r * ldc + q] = v;
        }
}

// int8: a block's products summed apart, then added with the block's scale
__attribute__((target("avx2,fma"))) static void q8_narrow(int mi, int nb, int k, const float *a, int lda,
                                                        const int8_t *const qs[4], const float *const ss[4], float *c, int ldc) {
    const float *a0 = a, *a1 = a + (mi > 1 ? lda : 0);
    const int8_t *w0 = qs[0], *w1 = qs[1], *w2 = qs[2], *w3 = qs[3];
    __m256 t00 = _mm256_setzero_ps(), t01 = t00, t10 = t00, t11 = t00, t20 = t00, t21 = t00, t30 = t00, t31 = t00;
    const int blocks = k / NC_Q8_BLOCK;
    const char *next = (const char *)(w0 + 4L * k);  // the next four rows: 128 bytes per block
    for (int b = 0; b < blocks; b++) {
        _mm_prefetch(next + 128L * b, _MM_HINT_T0);
        _mm_prefetch(next + 128L * b + 64, _MM_HINT_T0);
        __m256 b00 = _mm256_setzero_ps(), b01 = b00, b10 = b00, b11 = b00, b20 = b00, b21 = b00, b30 = b00, b31 = b00;
        for (int t = b * NC_Q8_BLOCK; t < (b + 1) * NC_Q8_BLOCK; t += 8) {
            NARROW_BODY(load_q8(w0 + t), load_q8(w1 + t), load_q8(w2 + t), load_q8(w3 + t))
        }
        __m256 s;
        s = _mm256_set1_ps(ss[0][b]); t00 = _mm256_fmadd_ps(b00, s, t00); t01 = _mm256_fmadd_ps(b01, s, t01);
        s = _mm256_set1_ps(ss[1][b]); t10 = _mm256_fmadd_ps(b10, s, t10); t11 = _mm256_fmadd_ps(b11, s, t11);
        s = _mm256_set1_ps(ss[2][b]); t20 = _mm256_fmadd_ps(b20, s, t20); t21 = _mm256_fmadd_ps(b21, s, t21);
        s = _mm256_set1_ps(ss[3][b]); t30 = _mm256_fmadd_ps(b30, s, t30); t31 = _mm256_fmadd_ps(b31, s, t31);
    }
    float r4[4][2] = {{nc_hsum8(t00), nc_hsum8(t01)}, {nc_hsum8(t10), nc_hsum8(t11)}, {nc_hsum8(t20), nc_hsum8(t21)}, {nc_hsum8(t30), nc_hsum8(t31)}};
    for (int r = 0; r < mi; r++)
        for (int q = 0; q < nb; q++) c[(long)r * ldc + q] = r4[q][r];
}
#endif

#ifdef NC_X86
// One row of A (decoding one sequence) against four weight rows: one multiply-add per widened weight vector.
#define ONE_BODY(W0, W1, W2, W3)                                                                            \
    __m256 x0 = _mm256_loadu_ps(a + t);                                                                     \
    b0 = _mm256_fmadd_ps(W0, x0, b0); b1 = _mm256_fmadd_ps(W1, x0, b1);                                      \
    b2 = _mm256_fmadd_ps(W2, x0, b2); b3 = _mm256_fmadd_ps(W3, x0, b3);

__attribute__((target("avx2,fma"))) static void bf16_one(int nb, int k, const float *a, const uint16_t *const ws[4], float *c) {
    __m256 b0 = _mm256_setzero_ps(), b1 = b0, b2 = b0, b3 = b0;
    const char *next = (const char *)(ws[0] + 4L * k);
    int t = 0;
    for (; t + 8 <= k; t += 8) {
        _mm_prefetch(next + 8L * t, _MM_HINT_T0);
        ONE_BODY(load_bf16(ws[0] + t), load_bf16(ws[1] + t), load_bf16(ws[2] + t), load_bf16(ws[3] + t))
    }
    float s[4] = {nc_hsum8(b0), nc_hsum8(b1), nc_hsum8(b2), nc_hsum8(b3)};
    for (int q = 0; q < nb; q++) {
        for (int u = t; u < k; u++) s[q] += a[u] * bf16_to_float(ws[q][u]);
        c[q] = s[q];
    }
}

__attribute__((target("avx2,fma"))) static void q8_one(int nb, int k, const float *a, const int8_t *const qs[4],
                                                     const float *const ss[4], float *c) {
    __m256 t0 = _mm256_setzero_ps(), t1 = t0, t2 = t0, t3 = t0;
    const int blocks = k / NC_Q8_BLOCK;
    const char *next = (const char *)(qs[0] + 4L * k);
    for (int b = 0; b < blocks; b++) {
        _mm_prefetch(next + 128L * b, _MM_HINT_T0);
        _mm_prefetch(next + 128L * b + 64, _MM_HINT_T0);
        __m256 b0 = _mm256_setzero_ps(), b1 = b0, b2 = b0, b3 = b0;
        for (int t = b * NC_Q8_BLOCK; t < (b + 1) * NC_Q8_BLOCK; t += 8) { ONE_BODY(load_q8(qs[0] + t), load_q8(qs[1] + t), load_q8(qs[2] + t), load_q8(qs[3] + t)) }
        t0 = _mm256_fmadd_ps(b0, _mm256_set1_ps(ss[0][b]), t0);
        t1 = _mm256_fmadd_ps(b1, _mm256_set1_ps(ss[1][b]), t1);
        t2 = _mm256_fmadd_ps(b2, _mm256_set1_ps(ss[2][b]), t2);
        t3 = _mm256_fmadd_ps(b3, _mm256_set1_ps(ss[3][b]), t3);
    }
    float s[4] = {nc_hsum8(t0), nc_hsum8(t1), nc_hsum8(t2), nc_hsum8(t3)};
    for (int q = 0; q < nb; q++) c[q] = s[q];
}
// int8, one row of A (as int16) against four weight rows (the first nb real; the others repeat row 0). Per block of
// 32 and weight row: two sign-extensions to int16, two madds (pairs of products summed into int32, exactly), an add,
// a conversion and a multiply-add by the two scales.
__attribute__((target("avx2,fma"))) static void q8_a16_one(int nb, int k, const int16_t *xq, const float *xs,
                                                         const int8_t *const qs[4], const float *const ss[4], float *c) {
    const int blocks = k / NC_Q8_BLOCK;
    __m256 t0 = _mm256_setzero_ps(), t1 = t0, t2 = t0, t3 = t0;
    const char *next = (const char *)(qs[0] + 4L * k);  // the next four rows (contiguous): 128 bytes per block
    for (int b = 0; b < blocks; b++) {
        _mm_prefetch(next + 128L * b, _MM_HINT_T0);
        _mm_prefetch(next + 128L * b + 64, _MM_HINT_T0);
        const long o = (long)b * NC_Q8_BLOCK;
        const __m256i lo = _mm256_loadu_si256((const __m256i *)(xq + o)), hi = _mm256_loadu_si256((const __m256i *)(xq + o + 16));
        const __m256 sx = _mm256_set1_ps(xs[b]);
#define Q8_ROW(R, ACC)                                                                                        \
        {                                                                                                    \
            __m256i p = _mm256_add_epi32(_mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(qs[R] + o))), lo), \
                                         _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(qs[R] + o + 16))), hi)); \
            ACC = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(sx, _mm256_set1_ps(ss[R][b])), ACC);  \
        }
        Q8_ROW(0, t0) Q8_ROW(1, t1) Q8_ROW(2, t2) Q8_ROW(3, t3)
#undef Q8_ROW
    }
    float r4[4] = {nc_hsum8(t0), nc_hsum8(t1), nc_hsum8(t2), nc_hsum8(t3)};
    for (int q = 0; q < nb; q++) c[q] = r4[q];
}

#endif


void nc_gemm_bf16_nt(int m, int n, int k, const float *a, int lda, const uint16_t *w, float *c, int ldc) {
#ifdef NC_X86
    if (nc_kernel_level() >= 1) {
        int wide = m % 4 == 3 ? m : m - m % 4;  // rows done four at a time (a last block of three pads one)
        if (wide > 0)
            for (int j = 0; j < n; j += 2) {  // weight rows outermost: each pair is read once for all rows of A
                int two = j + 1 < n;
                const uint16_t *w0 = w + (long)j * k, *w1 = two ? w0 + k : w0;
                for (int i = 0; i < wide; i += 4) bf16_tile(wide - i < 4 ? wide - i : 4, two, k, a + (long)i * lda, lda, w0, w1, c + (long)i * ldc + j, ldc);
            }
        if (wide < m)  // one or two rows left
            for (int j = 0; j < n; j += 4) {
                int nb = n - j < 4 ? n - j : 4;
                const uint16_t *w0 = w + (long)j * k;
                const uint16_t *ws[4] = {w0, nb > 1 ? w0 + k : w0, nb > 2 ? w0 + 2L * k : w0, nb > 3 ? w0 + 3L * k : w0};
                if (m - wide == 1) bf16_one(nb, k, a + (long)wide * lda, ws, c + (long)wide * ldc + j);
                else bf16_narrow(m - wide, nb, k, a + (long)wide * lda, lda, ws, c + (long)wide * ldc + j, ldc);
            }
        return;
    }
#endif
    bf16_portable(m, n, k, a, lda, w, c, ldc);
}

// Weight rows j..j+3 of an int8 matrix and their scales for the four-row kernels; rows past n repeat row j (their
// results are not stored). Returns how many are real.
static int q8_four_rows(const int8_t *q, const float *scales, int j, int n, int k, const int8_t *qs[4], const float *ss[4]) {
    const int blocks = k / NC_Q8_BLOCK, nb = n - j < 4 ? n - j : 4;
    for (int r = 0; r < 4; r++) {
        qs[r] = q + (long)(j + (r < nb ? r : 0)) * k;
        ss[r] = scales + (long)(j + (r < nb ? r : 0)) * blocks;
    }
    return nb;
}

void nc_gemm_q8_nt(int m, int n, int k, const float *a, int lda, const int8_t *q, const float *scales, float *c, int ldc) {
#ifdef NC_X86
    if (nc_kernel_level() >= 1) {
        const int blocks = k / NC_Q8_BLOCK;
        int wide = m % 4 == 3 ? m : m - m % 4;
        if (wide > 0)
            for (int j = 0; j < n; j += 2) {
                int two = j + 1 < n;
                const int8_t *q0 = q + (long)j * k, *q1 = two ? q0 + k : q0;
                const float *s0 = scales + (long)j * blocks, *s1 = two ? s0 + blocks : s0;
                for (int i = 0; i < wide; i += 4) q8_tile(wide - i < 4 ? wide - i : 4, two, k, a + (long)i * lda, lda, q0, q1, s0, s1, c + (long)i * ldc + j, ldc);
            }
        if (wide < m)
            for (int j = 0; j < n; j += 4) {
                const int8_t *qs[4];
                const float *ss[4];
                int nb = q8_four_rows(q, scales, j, n, k, qs, ss);
                if (m - wide == 1) q8_one(nb, k, a + (long)wide * lda, qs, ss, c + (long)wide * ldc + j);
                else q8_narrow(m - wide, nb, k, a + (long)wide * lda, lda, qs, ss, c + (long)wide * ldc + j, ldc);
            }
        return;
    }
#endif
    q8_portable(m, n, k, a, lda, q, scales, c, ldc);
}

void nc_gemv_q8_a16(int n, int k, const int16_t *xq, const float *xs, const int8_t *q, const float *scales, float *c) {
#ifdef NC_X86
    // AVX2 also where the CPU has AVX-512: an AVX-512 body of this kernel decoded d12 at 0.70x the AVX2 one on
    // Zen 4 (161-164 against 230-233 tok/s), whose 512-bit operations run as two 256-bit halves
    if (nc_kernel_level() >= 1) {
        for (int j = 0; j < n; j += 4) {
            const int8_t *qs[4];
            const float *ss[4];
            int nb = q8_four_rows(q, scales, j, n, k, qs, ss);
            q8_a16_one(nb, k, xq, xs, qs, ss, c + j);
        }
        return;
    }
#endif
    q8_a16_portable(n, k, xq, xs, q, scales, c);
}
