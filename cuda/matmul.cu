// Matrix products through cuBLASLt. Our tensors are row-major; cuBLASLt is column-major, so C = op(A) op(B)
// is computed as C^T = op(B)^T op(A)^T: a row-major [r, c] buffer is a column-major [c, r] matrix.
#include <cuda_bf16.h>

#include "common.cuh"

__global__ void round_to_bf16(__nv_bfloat16 *out, const float *in, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = __float2bfloat16_rn(in[i]);
}

#define NC_LT(ctx, call)                                                                     \
    do {                                                                                     \
        cublasStatus_t st_ = (call);                                                         \
        if (st_ != CUBLAS_STATUS_SUCCESS) { status = nc_fail(ctx, #call, cublasGetStatusString(st_)); goto done; } \
    } while (0)

// `batch` products at strides m*k, k*n and m*n (Muon's stacks of same-shape matrices).
static int matmul_strided(nc_context *ctx, float *c, const float *a, const float *b, int64_t batch, int64_t m, int64_t n,
                          int64_t k, int trans_a, int trans_b, float alpha, float beta, int bf16) {
    int status = 0;
    const void *x = b, *y = a;  // D = op(X) op(Y): X is B, Y is A
    cudaDataType_t in_type = CUDA_R_32F;
    if (bf16) {
        size_t need = (size_t)(batch * (m * k + k * n)) * sizeof(__nv_bfloat16);
        if (need > ctx->bf16_scratch_bytes) {
            if (nc_free(ctx, ctx->bf16_scratch)) return 1;
            ctx->bf16_scratch = nullptr;
            ctx->bf16_scratch_bytes = 0;
            if (nc_malloc(ctx, (void **)&ctx->bf16_scratch, (int64_t)need)) return 1;
            ctx->bf16_scratch_bytes = need;
        }
        __nv_bfloat16 *ab = (__nv_bfloat16 *)ctx->bf16_scratch, *bb = ab + batch * m * k;
        round_to_bf16<<<nc_blocks(batch * m * k, 256), 256, 0, ctx->stream>>>(ab, a, batch * m * k);
        NC_LAUNCHED(ctx, "round_to_bf16");
        round_to_bf16<<<nc_blocks(batch * k * n, 256), 256, 0, ctx->stream>>>(bb, b, batch * k * n);
        NC_LAUNCHED(ctx, "round_to_bf16");
        x = bb;
        y = ab;
        in_type = CUDA_R_16BF;
    }
    {
        cublasLtMatmulDesc_t desc = nullptr;
        cublasLtMatrixLayout_t lx = nullptr, ly = nullptr, lc = nullptr;
        cublasLtMatmulPreference_t pref = nullptr;
        cublasLtMatmulHeuristicResult_t heuristic;
        int found = 0;
        cublasOperation_t opx = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, opy = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
        // exact fp32 products for the fp32 mode: CUBLAS_COMPUTE_32F never uses TF32
        NC_LT(ctx, cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        NC_LT(ctx, cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opx, sizeof(opx)));
        NC_LT(ctx, cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opy, sizeof(opy)));
        // stored shapes (column-major): X is [n, k] (or [k, n] when transposed), Y is [k, m] (or [m, k]), C is [n, m]
        NC_LT(ctx, cublasLtMatrixLayoutCreate(&lx, in_type, trans_b ? k : n, trans_b ? n : k, trans_b ? k : n));
        NC_LT(ctx, cublasLtMatrixLayoutCreate(&ly, in_type, trans_a ? m : k, trans_a ? k : m, trans_a ? m : k));
        NC_LT(ctx, cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, n, m, n));
        if (batch > 1) {
            int32_t count = (int32_t)batch;
            int64_t sx = k * n, sy = m * k, sc = m * n;
            NC_LT(ctx, cublasLtMatrixLayoutSetAttribute(lx, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
            NC_LT(ctx, cublasLtMatrixLayoutSetAttribute(ly, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
            NC_LT(ctx, cublasLtMatrixLayoutSetAttribute(lc, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
            NC_LT(ctx, cublasLtMatrixLayoutSetAttribute(lx, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sx, sizeof(sx)));
            NC_LT(ctx, cublasLtMatrixLayoutSetAttribute(ly, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sy, sizeof(sy)));
            NC_LT(ctx, cublasLtMatrixLayoutSetAttribute(lc, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sc, sizeof(sc)));
        }
        NC_LT(ctx, cublasLtMatmulPreferenceCreate(&pref));
        NC_LT(ctx, cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                        &ctx->workspace_bytes, sizeof(ctx->workspace_bytes)));
        NC_LT(ctx, cublasLtMatmulAlgoGetHeuristic(ctx->lt, desc, lx, ly, lc, lc, pref, 1, &heuristic, &found));
        if (found == 0) { status = nc_fail(ctx, "cublasLtMatmulAlgoGetHeuristic", "no algorithm for this product"); goto done; }
        NC_LT(ctx, cublasLtMatmul(ctx->lt, desc, &alpha, x, lx, y, ly, &beta, c, lc, c, lc, &heuristic.algo,
                                  ctx->workspace, ctx->workspace_bytes, ctx->stream));
    done:
        if (pref) cublasLtMatmulPreferenceDestroy(pref);
        if (lc) cublasLtMatrixLayoutDestroy(lc);
        if (ly) cublasLtMatrixLayoutDestroy(ly);
        if (lx) cublasLtMatrixLayoutDestroy(lx);
        if (desc) cublasLtMatmulDescDestroy(desc);
    }
    return status;
}

int nc_matmul(nc_context *ctx, float *c, const float *a, const float *b, int64_t m, int64_t n, int64_t k, int trans_a,
              int trans_b, float alpha, float beta, int bf16) {
    return matmul_strided(ctx, c, a, b, 1, m, n, k, trans_a, trans_b, alpha, beta, bf16);
}

int nc_matmul_batched(nc_context *ctx, float *c, const float *a, const float *b, int64_t batch, int64_t m, int64_t n,
                      int64_t k, int trans_a, int trans_b, float alpha, float beta, int bf16) {
    return matmul_strided(ctx, c, a, b, batch, m, n, k, trans_a, trans_b, alpha, beta, bf16);
}
