// Skinny matrix product for batched decoding (see ckernels.h). Two B rows times four A rows per tile: eight
// independent accumulators, six loads per eight fused multiply-adds. B (the weights) streams from memory: each tile
// asks for the next rows' cache lines while it works on these, as quant_gemm.c's kernels do; without it d12's f32
// decode at batch 8 spent 44-46 ms a step in its products instead of 30-32 (AMD EPYC Zen 4, 2 threads).
#include "ckernels.h"

#include "x86_simd.h"

static inline void store(float *c, float v, float alpha, float beta) { *c = alpha * v + (beta == 0 ? 0 : beta * *c); }

static void skinny_portable(int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                            float beta, float *c, int ldc) {
    for (int j = 0; j < n; j++) {
        const float *bj = b + (long)j * ldb;
        for (int i = 0; i < m; i++) {
            const float *ai = a + (long)i * lda;
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int t = 0;
            for (; t + 4 <= k; t += 4) { s0 += ai[t] * bj[t]; s1 += ai[t + 1] * bj[t + 1]; s2 += ai[t + 2] * bj[t + 2]; s3 += ai[t + 3] * bj[t + 3]; }
            for (; t < k; t++) s0 += ai[t] * bj[t];
            store(c + (long)i * ldc + j, (s0 + s1) + (s2 + s3), alpha, beta);
        }
    }
}

#ifdef NC_X86

// rows [i0, i0 + mi) of A (mi <= 4) against B rows j and j + 1 (or only j when two == 0), in vectors of W bits
// (256: AVX2, 512: AVX-512)
#define NC_SKINNY_TILE_BODY(W, HSUM)                                                                                 \
    const int lanes = W / 32;                                                                                         \
    __m##W acc[2][4];                                                                                                 \
    for (int r = 0; r < 4; r++) { acc[0][r] = _mm##W##_setzero_ps(); acc[1][r] = _mm##W##_setzero_ps(); }            \
    const float *a0 = a, *a1 = a + (mi > 1 ? lda : 0), *a2 = a + (mi > 2 ? 2L * lda : 0), *a3 = a + (mi > 3 ? 3L * lda : 0); \
    /* the next pair of B rows (b1 + ldb; contiguous when ldb == k): 2 x 4 bytes ahead per float of t, a line per 8 floats */  \
    const char *next = (const char *)(b1 + (b1 - b0));                                                                   \
    int t = 0;                                                                                                        \
    for (; t + lanes <= k; t += lanes) {                                                                              \
        for (int l = 0; l < lanes / 8; l++) _mm_prefetch(next + 8L * t + 64 * l, _MM_HINT_T0);                         \
        __m##W w0 = _mm##W##_loadu_ps(b0 + t), w1 = _mm##W##_loadu_ps(b1 + t);                                       \
        __m##W x;                                                                                                     \
        x = _mm##W##_loadu_ps(a0 + t); acc[0][0] = _mm##W##_fmadd_ps(w0, x, acc[0][0]); acc[1][0] = _mm##W##_fmadd_ps(w1, x, acc[1][0]); \
        x = _mm##W##_loadu_ps(a1 + t); acc[0][1] = _mm##W##_fmadd_ps(w0, x, acc[0][1]); acc[1][1] = _mm##W##_fmadd_ps(w1, x, acc[1][1]); \
        x = _mm##W##_loadu_ps(a2 + t); acc[0][2] = _mm##W##_fmadd_ps(w0, x, acc[0][2]); acc[1][2] = _mm##W##_fmadd_ps(w1, x, acc[1][2]); \
        x = _mm##W##_loadu_ps(a3 + t); acc[0][3] = _mm##W##_fmadd_ps(w0, x, acc[0][3]); acc[1][3] = _mm##W##_fmadd_ps(w1, x, acc[1][3]); \
    }                                                                                                                 \
    /* reduce with constant indices first: indexing the accumulators by a run-time row would keep them in memory */   \
    float sum[2][4] = {{HSUM(acc[0][0]), HSUM(acc[0][1]), HSUM(acc[0][2]), HSUM(acc[0][3])},                          \
                       {HSUM(acc[1][0]), HSUM(acc[1][1]), HSUM(acc[1][2]), HSUM(acc[1][3])}};                          \
    const float *rows[4] = {a0, a1, a2, a3};                                                                          \
    for (int r = 0; r < mi; r++) {                                                                                    \
        float s0 = sum[0][r], s1 = sum[1][r];                                                                         \
        for (int u = t; u < k; u++) { s0 += rows[r][u] * b0[u]; s1 += rows[r][u] * b1[u]; }                           \
        store(c + (long)r * ldc, s0, alpha, beta);                                                                    \
        if (two) store(c + (long)r * ldc + 1, s1, alpha, beta);                                                       \
    }

__attribute__((target("avx2,fma"))) static void tile(int mi, int two, int k, float alpha, const float *a, int lda,
                                                   const float *b0, const float *b1, float beta, float *c, int ldc) {
    NC_SKINNY_TILE_BODY(256, nc_hsum8)
}
__attribute__((target("avx512f,fma"))) static void tile512(int mi, int two, int k, float alpha, const float *a, int lda,
                                                         const float *b0, const float *b1, float beta, float *c, int ldc) {
    NC_SKINNY_TILE_BODY(512, _mm512_reduce_add_ps)
}

// rows [0, mi) of A (mi <= 2) against four B rows (the first nb real, the others repeat b0): for one or two
// rows of A, a 2 x 4 tile would spend half its multiply-adds on padding
__attribute__((target("avx2,fma"))) static void tile_narrow(int mi, int nb, int k, float alpha, const float *a, int lda,
                                                          const float *const bs[4], float beta, float *c, int ldc) {
    __m256 acc[4][2];
    for (int q = 0; q < 4; q++) { acc[q][0] = _mm256_setzero_ps(); acc[q][1] = _mm256_setzero_ps(); }
    const float *a0 = a, *a1 = a + (mi > 1 ? lda : 0);
    const float *b0 = bs[0], *b1 = bs[1], *b2 = bs[2], *b3 = bs[3];
    const char *next = (const char *)(b0 + 4 * (b1 - b0));  // the next four B rows: 16 bytes ahead per float of t
    int t = 0;
    for (; t + 8 <= k; t += 8) {
        _mm_prefetch(next + 16L * t, _MM_HINT_T0);
        _mm_prefetch(next + 16L * t + 64, _MM_HINT_T0);
        __m256 x0 = _mm256_loadu_ps(a0 + t), x1 = _mm256_loadu_ps(a1 + t), w;
        w = _mm256_loadu_ps(b0 + t); acc[0][0] = _mm256_fmadd_ps(w, x0, acc[0][0]); acc[0][1] = _mm256_fmadd_ps(w, x1, acc[0][1]);
        w = _mm256_loadu_ps(b1 + t); acc[1][0] = _mm256_fmadd_ps(w, x0, acc[1][0]); acc[1][1] = _mm256_fmadd_ps(w, x1, acc[1][1]);
        w = _mm256_loadu_ps(b2 + t); acc[2][0] = _mm256_fmadd_ps(w, x0, acc[2][0]); acc[2][1] = _mm256_fmadd_ps(w, x1, acc[2][1]);
        w = _mm256_loadu_ps(b3 + t); acc[3][0] = _mm256_fmadd_ps(w, x0, acc[3][0]); acc[3][1] = _mm256_fmadd_ps(w, x1, acc[3][1]);
    }
    float sum[4][2] = {{nc_hsum8(acc[0][0]), nc_hsum8(acc[0][1])}, {nc_hsum8(acc[1][0]), nc_hsum8(acc[1][1])},
                       {nc_hsum8(acc[2][0]), nc_hsum8(acc[2][1])}, {nc_hsum8(acc[3][0]), nc_hsum8(acc[3][1])}};
    const float *rows[2] = {a0, a1};
    for (int r = 0; r < mi; r++) {
        for (int q = 0; q < nb; q++) {
            float s = sum[q][r];
            for (int u = t; u < k; u++) s += rows[r][u] * bs[q][u];
            store(c + (long)r * ldc + q, s, alpha, beta);
        }
    }
}

__attribute__((target("avx2,fma"))) static void skinny_avx2(int m, int n, int k, float alpha, const float *a, int lda,
                                                          const float *b, int ldb, float beta, float *c, int ldc) {
    int wide512 = nc_kernel_level() >= 2;
    int wide = m % 4 == 3 ? m : m - m % 4;  // rows done in blocks of four (a block of three pads one)
    if (wide > 0) {
        for (int j = 0; j < n; j += 2) {  // B rows outermost: each pair is read once, then reused from L1
            int two = j + 1 < n;
            const float *b0 = b + (long)j * ldb, *b1 = two ? b0 + ldb : b0;
            for (int i = 0; i < wide; i += 4) {
                int mi = wide - i < 4 ? wide - i : 4;
                (wide512 ? tile512 : tile)(mi, two, k, alpha, a + (long)i * lda, lda, b0, b1, beta, c + (long)i * ldc + j, ldc);
            }
        }
    }
    int i = wide;
    if (i < m) {  // one or two rows left
        int mi = m - i;
        for (int j = 0; j < n; j += 4) {
            int nb = n - j < 4 ? n - j : 4;
            const float *b0 = b + (long)j * ldb;
            const float *bs[4] = {b0, nb > 1 ? b0 + ldb : b0, nb > 2 ? b0 + 2L * ldb : b0, nb > 3 ? b0 + 3L * ldb : b0};
            tile_narrow(mi, nb, k, alpha, a + (long)i * lda, lda, bs, beta, c + (long)i * ldc + j, ldc);
        }
    }
}
#endif

void nc_sgemm_skinny_nt(int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                        float beta, float *c, int ldc) {
#ifdef NC_X86
    if (nc_kernel_level() >= 1) { skinny_avx2(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); return; }
#endif
    skinny_portable(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
