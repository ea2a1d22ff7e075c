// Matrix products through cuBLASLt. Our tensors are row-major; cuBLASLt is column-major, so C = op(A) op(B)
// is computed as C^T = op(B)^T op(A)^T: a row-major [r, c] buffer is a column-major [c, r] matrix. Each shape's
// plan (descriptor, layouts, algorithm) is made once and cached in the context.
#include <cuda_bf16.h>

#include "common.cuh"

__global__ void round_to_bf16(__nv_bfloat16 *out, const float *in, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = __float2bfloat16_rn(in[i]);
}

// A product's plan: the descriptor, the three layouts and the algorithm cuBLASLt's heuristic picked for them, made
// once per shape and reused, so a call is one cublasLtMatmul (the descriptors and the heuristic cost as much host
// time as a small product). The key includes the operands' address alignment, which the algorithm may rely on.
struct nc_matmul_plan {
    int64_t batch, m, n, k;
    int trans_a, trans_b, bf16, c_bf16, align_x, align_y, align_c;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t lx, ly, lc;
    cublasLtMatmulAlgo_t algo;
};

// The largest power of two (at most 256) dividing the address: what cuBLASLt calls the operand's alignment.
static int alignment_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    int align = 256;
    while (align > 1 && a % align) align /= 2;
    return align;
}

static void plan_release(nc_matmul_plan *p) {
    if (p->lc) cublasLtMatrixLayoutDestroy(p->lc);
    if (p->ly) cublasLtMatrixLayoutDestroy(p->ly);
    if (p->lx) cublasLtMatrixLayoutDestroy(p->lx);
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
}

void nc_matmul_plans_destroy(nc_context *ctx) {
    for (int i = 0; i < ctx->plan_count; i++) plan_release(&ctx->plans[i]);
    free(ctx->plans);
    ctx->plans = nullptr;
    ctx->plan_count = ctx->plan_capacity = 0;
}

#define NC_LT_PLAN(ctx, call)                                                                \
    do {                                                                                     \
        cublasStatus_t st_ = (call);                                                         \
        if (st_ != CUBLAS_STATUS_SUCCESS) { plan_release(&p); return nc_fail(ctx, #call, cublasGetStatusString(st_)); } \
    } while (0)

// The plan for this shape: the cached one, or a new one (descriptors, layouts, heuristic) added to the cache.
static int matmul_plan(nc_context *ctx, const nc_matmul_plan &key, nc_matmul_plan **out) {
    for (int i = 0; i < ctx->plan_count; i++) {
        nc_matmul_plan *q = &ctx->plans[i];
        if (q->batch == key.batch && q->m == key.m && q->n == key.n && q->k == key.k && q->trans_a == key.trans_a &&
            q->trans_b == key.trans_b && q->bf16 == key.bf16 && q->c_bf16 == key.c_bf16 && q->align_x == key.align_x && q->align_y == key.align_y &&
            q->align_c == key.align_c) {
            *out = q;
            return 0;
        }
    }
    nc_matmul_plan p = key;
    p.desc = nullptr; p.lx = p.ly = p.lc = nullptr;
    int64_t m = key.m, n = key.n, k = key.k;
    cudaDataType_t in_type = key.bf16 ? CUDA_R_16BF : CUDA_R_32F;
    cublasOperation_t opx = key.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, opy = key.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    // exact fp32 products for the fp32 mode: CUBLAS_COMPUTE_32F never uses TF32
    NC_LT_PLAN(ctx, cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    NC_LT_PLAN(ctx, cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opx, sizeof(opx)));
    NC_LT_PLAN(ctx, cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opy, sizeof(opy)));
    // stored shapes (column-major): X is [n, k] (or [k, n] when transposed), Y is [k, m] (or [m, k]), C is [n, m]
    NC_LT_PLAN(ctx, cublasLtMatrixLayoutCreate(&p.lx, in_type, key.trans_b ? k : n, key.trans_b ? n : k, key.trans_b ? k : n));
    NC_LT_PLAN(ctx, cublasLtMatrixLayoutCreate(&p.ly, in_type, key.trans_a ? m : k, key.trans_a ? k : m, key.trans_a ? m : k));
    NC_LT_PLAN(ctx, cublasLtMatrixLayoutCreate(&p.lc, key.c_bf16 ? CUDA_R_16BF : CUDA_R_32F, n, m, n));
    if (key.batch > 1) {
        int32_t count = (int32_t)key.batch;
        int64_t sx = k * n, sy = m * k, sc = m * n;
        NC_LT_PLAN(ctx, cublasLtMatrixLayoutSetAttribute(p.lx, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
        NC_LT_PLAN(ctx, cublasLtMatrixLayoutSetAttribute(p.ly, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
        NC_LT_PLAN(ctx, cublasLtMatrixLayoutSetAttribute(p.lc, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
        NC_LT_PLAN(ctx, cublasLtMatrixLayoutSetAttribute(p.lx, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sx, sizeof(sx)));
        NC_LT_PLAN(ctx, cublasLtMatrixLayoutSetAttribute(p.ly, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sy, sizeof(sy)));
        NC_LT_PLAN(ctx, cublasLtMatrixLayoutSetAttribute(p.lc, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sc, sizeof(sc)));
    }
    cublasLtMatmulPreference_t pref = nullptr;
    cublasLtMatmulHeuristicResult_t heuristic;
    int found = 0;
    cublasStatus_t st = cublasLtMatmulPreferenceCreate(&pref);
    uint32_t ax = (uint32_t)key.align_x, ay = (uint32_t)key.align_y, ac = (uint32_t)key.align_c;
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ctx->workspace_bytes,
                                                  sizeof(ctx->workspace_bytes));
    // X is cuBLASLt's A, Y its B (see the top of this file)
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &ax, sizeof(ax));
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ay, sizeof(ay));
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ac, sizeof(ac));
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ac, sizeof(ac));
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulAlgoGetHeuristic(ctx->lt, p.desc, p.lx, p.ly, p.lc, p.lc, pref, 1, &heuristic, &found);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS) { plan_release(&p); return nc_fail(ctx, "cublasLtMatmulAlgoGetHeuristic", cublasGetStatusString(st)); }
    if (found == 0) { plan_release(&p); return nc_fail(ctx, "cublasLtMatmulAlgoGetHeuristic", "no algorithm for this product"); }
    p.algo = heuristic.algo;
    if (ctx->plan_count == ctx->plan_capacity) {
        int capacity = ctx->plan_capacity ? 2 * ctx->plan_capacity : 64;
        nc_matmul_plan *grown = (nc_matmul_plan *)realloc(ctx->plans, (size_t)capacity * sizeof(nc_matmul_plan));
        if (!grown) { plan_release(&p); return nc_fail(ctx, "matmul_plan", "out of host memory for the plan cache"); }
        ctx->plans = grown;
        ctx->plan_capacity = capacity;
    }
    ctx->plans[ctx->plan_count] = p;
    *out = &ctx->plans[ctx->plan_count++];
    return 0;
}

// `batch` products at strides m*k, k*n and m*n (Muon's stacks of same-shape matrices). With bf16, each operand that
// is fp32 (a_bf16 / b_bf16 == 0) is rounded into the scratch first; one already in bf16 is read as it is.
static int matmul_strided(nc_context *ctx, void *c, const void *a, int a_bf16, const void *b, int b_bf16, int64_t batch,
                          int64_t m, int64_t n, int64_t k, int trans_a, int trans_b, float alpha, float beta, int bf16,
                          int c_bf16 = 0) {
    const void *x = b, *y = a;  // D = op(X) op(Y): X is B, Y is A
    if (bf16) {
        int64_t na = a_bf16 ? 0 : batch * m * k, nb = b_bf16 ? 0 : batch * k * n;  // what needs rounding here
        // each rounded operand starts on a 256-byte boundary of the scratch (the plans' alignment)
        int64_t offset_b = (na + 127) / 128 * 128;
        size_t need = (size_t)(offset_b + nb) * sizeof(__nv_bfloat16);
        if (need > ctx->bf16_scratch_bytes) {
            if (nc_free(ctx, ctx->bf16_scratch)) return 1;
            ctx->bf16_scratch = nullptr;
            ctx->bf16_scratch_bytes = 0;
            if (nc_malloc(ctx, (void **)&ctx->bf16_scratch, (int64_t)need)) return 1;
            ctx->bf16_scratch_bytes = need;
        }
        __nv_bfloat16 *ab = (__nv_bfloat16 *)ctx->bf16_scratch, *bb = ab + offset_b;
        if (na) {
            round_to_bf16<<<nc_blocks(na, 256), 256, 0, ctx->stream>>>(ab, (const float *)a, na);
            NC_LAUNCHED(ctx, "round_to_bf16");
            y = ab;
        }
        if (nb) {
            round_to_bf16<<<nc_blocks(nb, 256), 256, 0, ctx->stream>>>(bb, (const float *)b, nb);
            NC_LAUNCHED(ctx, "round_to_bf16");
            x = bb;
        }
    } else if (a_bf16 || b_bf16) {
        return nc_fail(ctx, "nc_matmul", "a bf16 operand needs the bf16 product");
    }
    nc_matmul_plan key = {};
    key.batch = batch; key.m = m; key.n = n; key.k = k; key.trans_a = trans_a; key.trans_b = trans_b; key.bf16 = bf16 != 0;
    key.c_bf16 = c_bf16 != 0;
    key.align_x = alignment_of(x); key.align_y = alignment_of(y); key.align_c = alignment_of(c);
    nc_matmul_plan *plan = nullptr;
    if (matmul_plan(ctx, key, &plan)) return 1;
    cublasStatus_t st = cublasLtMatmul(ctx->lt, plan->desc, &alpha, x, plan->lx, y, plan->ly, &beta, c, plan->lc, c, plan->lc,
                                       &plan->algo, ctx->workspace, ctx->workspace_bytes, ctx->stream);
    if (st != CUBLAS_STATUS_SUCCESS) return nc_fail(ctx, "cublasLtMatmul", cublasGetStatusString(st));
    return 0;
}

int nc_matmul(nc_context *ctx, float *c, const float *a, const float *b, int64_t m, int64_t n, int64_t k, int trans_a,
              int trans_b, float alpha, float beta, int bf16) {
    return matmul_strided(ctx, c, a, 0, b, 0, 1, m, n, k, trans_a, trans_b, alpha, beta, bf16);
}

int nc_matmul_batched(nc_context *ctx, float *c, const float *a, const float *b, int64_t batch, int64_t m, int64_t n,
                      int64_t k, int trans_a, int trans_b, float alpha, float beta, int bf16) {
    return matmul_strided(ctx, c, a, 0, b, 0, batch, m, n, k, trans_a, trans_b, alpha, beta, bf16);
}

int nc_matmul_mixed(nc_context *ctx, float *c, const void *a, int a_bf16, const void *b, int b_bf16, int64_t m, int64_t n,
                    int64_t k, int trans_a, int trans_b, float alpha, float beta) {
    return matmul_strided(ctx, c, a, a_bf16, b, b_bf16, 1, m, n, k, trans_a, trans_b, alpha, beta, 1);
}

int nc_matmul_bf16_out(nc_context *ctx, void *c, const void *a, int a_bf16, const void *b, int b_bf16, int64_t m, int64_t n,
                       int64_t k, int trans_a, int trans_b) {
    return matmul_strided(ctx, c, a, a_bf16, b, b_bf16, 1, m, n, k, trans_a, trans_b, 1.f, 0.f, 1, 1);
}

int nc_to_bf16(nc_context *ctx, void *dst, const float *src, int64_t n) {
    if (n == 0) return 0;
    round_to_bf16<<<nc_blocks(n, 256), 256, 0, ctx->stream>>>((__nv_bfloat16 *)dst, src, n);
    NC_LAUNCHED(ctx, "round_to_bf16");
    return 0;
}

__global__ void widen_from_bf16(float *out, const __nv_bfloat16 *in, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = __bfloat162float(in[i]);
}

int nc_from_bf16(nc_context *ctx, float *dst, const void *src, int64_t n) {
    if (n == 0) return 0;
    widen_from_bf16<<<nc_blocks(n, 256), 256, 0, ctx->stream>>>(dst, (const __nv_bfloat16 *)src, n);
    NC_LAUNCHED(ctx, "widen_from_bf16");
    return 0;
}

template <typename S>
__global__ void round_rows_to_bf16(__nv_bfloat16 *dst, int64_t ld, const S *src, int64_t rows, int64_t cols) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    int64_t r = i / cols, c = i % cols;
    nc_store(dst, r * ld + c, src ? nc_load(src, i) : 0.f);
}

int nc_to_bf16_rows(nc_context *ctx, void *dst, int64_t ld, const void *src, int src_bf16, int64_t rows, int64_t cols) {
    if (rows * cols == 0) return 0;
    if (src_bf16)
        round_rows_to_bf16<<<nc_blocks(rows * cols, 256), 256, 0, ctx->stream>>>((__nv_bfloat16 *)dst, ld, (const __nv_bfloat16 *)src, rows,
                                                                                 cols);
    else
        round_rows_to_bf16<<<nc_blocks(rows * cols, 256), 256, 0, ctx->stream>>>((__nv_bfloat16 *)dst, ld, (const float *)src, rows, cols);
    NC_LAUNCHED(ctx, "round_rows_to_bf16");
    return 0;
}
