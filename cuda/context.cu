// The context: device, stream, cuBLASLt handle and workspace; memory and errors.
#include "common.cuh"

int nc_fail(nc_context *ctx, const char *what, const char *detail) {
    if (ctx) snprintf(ctx->error, sizeof(ctx->error), "%s: %s", what, detail);
    return 1;
}

int nc_create(nc_context **out, int device) {
    *out = nullptr;
    nc_context *ctx = (nc_context *)calloc(1, sizeof(nc_context));
    if (!ctx) return 1;
    *out = ctx;  // even on failure, so nc_error_string can say why
    ctx->device = device;
    NC_CUDA(ctx, cudaSetDevice(device));
    NC_CUDA(ctx, cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
    cublasStatus_t s = cublasLtCreate(&ctx->lt);
    if (s != CUBLAS_STATUS_SUCCESS) return nc_fail(ctx, "cublasLtCreate", cublasGetStatusString(s));
    ctx->workspace_bytes = 32u << 20;  // what cuBLASLt's heuristics want for large products on Hopper
    NC_CUDA(ctx, cudaMalloc(&ctx->workspace, ctx->workspace_bytes));
    return 0;
}

void nc_destroy(nc_context *ctx) {
    if (!ctx) return;
    if (ctx->stream) cudaStreamSynchronize(ctx->stream);
    if (ctx->workspace) cudaFree(ctx->workspace);
    if (ctx->bf16_scratch) cudaFree(ctx->bf16_scratch);
    if (ctx->muon_scratch) cudaFree(ctx->muon_scratch);
    if (ctx->lt) cublasLtDestroy(ctx->lt);
    if (ctx->stream) cudaStreamDestroy(ctx->stream);
    free(ctx);
}

const char *nc_error_string(nc_context *ctx) { return ctx ? ctx->error : "no context (out of host memory)"; }

int nc_device_info(nc_context *ctx, char *name, int name_len, int *sm_count, int64_t *memory_bytes) {
    cudaDeviceProp p;
    NC_CUDA(ctx, cudaGetDeviceProperties(&p, ctx->device));
    if (name && name_len > 0) snprintf(name, name_len, "%s", p.name);
    if (sm_count) *sm_count = p.multiProcessorCount;
    if (memory_bytes) *memory_bytes = (int64_t)p.totalGlobalMem;
    return 0;
}

// device memory in use (by anything on the card) after an allocation: its largest value is the peak we report
static void note_peak(nc_context *ctx) {
    size_t f = 0, t = 0;
    if (cudaMemGetInfo(&f, &t) == cudaSuccess && (int64_t)(t - f) > ctx->peak_bytes) ctx->peak_bytes = (int64_t)(t - f);
}

int nc_malloc(nc_context *ctx, void **ptr, int64_t bytes) {
    NC_CUDA(ctx, cudaMalloc(ptr, (size_t)bytes));
    note_peak(ctx);
    return 0;
}

int nc_free(nc_context *ctx, void *ptr) {
    NC_CUDA(ctx, cudaFree(ptr));
    return 0;
}

int nc_memory_info(nc_context *ctx, int64_t *free_bytes, int64_t *total_bytes, int64_t *peak_bytes) {
    size_t f = 0, t = 0;
    NC_CUDA(ctx, cudaMemGetInfo(&f, &t));
    note_peak(ctx);
    if (free_bytes) *free_bytes = (int64_t)f;
    if (total_bytes) *total_bytes = (int64_t)t;
    if (peak_bytes) *peak_bytes = ctx->peak_bytes;
    return 0;
}

int nc_copy_to_device(nc_context *ctx, void *dst, const void *src, int64_t bytes) {
    NC_CUDA(ctx, cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyHostToDevice, ctx->stream));
    NC_CUDA(ctx, cudaStreamSynchronize(ctx->stream));  // the host buffer may be reused at once
    return 0;
}

int nc_copy_to_host(nc_context *ctx, void *dst, const void *src, int64_t bytes) {
    NC_CUDA(ctx, cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyDeviceToHost, ctx->stream));
    NC_CUDA(ctx, cudaStreamSynchronize(ctx->stream));
    return 0;
}

int nc_synchronize(nc_context *ctx) {
    NC_CUDA(ctx, cudaStreamSynchronize(ctx->stream));
    return 0;
}

int nc_zero(nc_context *ctx, void *ptr, int64_t bytes) {
    NC_CUDA(ctx, cudaMemsetAsync(ptr, 0, (size_t)bytes, ctx->stream));
    return 0;
}

int nc_copy_on_device(nc_context *ctx, void *dst, const void *src, int64_t bytes) {
    NC_CUDA(ctx, cudaMemcpyAsync(dst, src, (size_t)bytes, cudaMemcpyDeviceToDevice, ctx->stream));
    return 0;
}
