#ifndef NANOCHAT_CKERNELS_H
#define NANOCHAT_CKERNELS_H

/// C = alpha * A B^T + beta * C for a skinny A: A is m x k (row stride lda), B is n x k (row stride ldb, e.g. a
/// weight matrix [out, in]), C is m x n (row stride ldc). Meant for m of 2 to 16 (decoding a batch of rows),
/// where BLAS's sgemm packs all of B for only a few rows and runs far below both its FLOP and bandwidth rates.
/// Reads B once, keeps the rows of A in cache. Single-threaded: callers split n between threads.
/// Uses AVX2 and FMA when the CPU has them (checked once at run time), portable C otherwise.
void nc_sgemm_skinny_nt(int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                        float beta, float *c, int ldc);

/// 1 when the AVX2 + FMA path is used.
int nc_skinny_uses_avx2(void);

#endif
