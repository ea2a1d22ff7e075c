// The context: device, stream, cuBLASLt handle and workspace; memory and errors; cuDNN's attention when its library
// loads.
#include <dlfcn.h>
#include <stdlib.h>

#include "common.cuh"

int nc_fail(nc_context *ctx, const char *what, const char *detail) {
    if (ctx) snprintf(ctx->error, sizeof(ctx->error), "%s: %s", what, detail);
    return 1;
}

// the caching allocator's source of memory
static int device_alloc(void *c, void **ptr, int64_t bytes) {
    nc_context *ctx = (nc_context *)c;
    cudaError_t err = cudaMalloc(ptr, (size_t)bytes);
    if (err != cudaSuccess) snprintf(ctx->error, sizeof(ctx->error), "cudaMalloc(%lld bytes): %s", (long long)bytes, cudaGetErrorString(err));
    return err == cudaSuccess ? 0 : 1;
}
static void device_free(void *c, void *ptr) {
    (void)c;
    cudaFree(ptr);
}

// Loads libnanochat_cudnn.so from beside this library ($NANOCHAT_CUDNN_LIB overrides the place): cuDNN's fused flash
// attention for the bf16 path. Without it (not built, no cuDNN on the machine, or NANOCHAT_ATTENTION=wmma) the WMMA
// kernels run, and attention_backend says why.
static void load_cudnn(nc_context *ctx) {
    const char *choice = getenv("NANOCHAT_ATTENTION");
    if (choice && strcmp(choice, "wmma") == 0) {
        snprintf(ctx->attention_backend, sizeof ctx->attention_backend, "WMMA kernels (NANOCHAT_ATTENTION=wmma)");
        return;
    }
    char path[4096] = "";
    const char *given = getenv("NANOCHAT_CUDNN_LIB");
    Dl_info self;
    if (given && *given) snprintf(path, sizeof path, "%s", given);
    else if (dladdr((void *)&nc_create, &self) && self.dli_fname) {
        snprintf(path, sizeof path, "%s", self.dli_fname);
        char *slash = strrchr(path, '/');
        snprintf(slash ? slash + 1 : path, sizeof path - (slash ? (size_t)(slash + 1 - path) : 0), "libnanochat_cudnn.so");
    }
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(ctx->attention_backend, sizeof ctx->attention_backend, "WMMA kernels (no cuDNN attention: %s)", dlerror());
        return;
    }
    nc_cudnn *c = (nc_cudnn *)calloc(1, sizeof(nc_cudnn));
    auto create = (decltype(&ncd_create))dlsym(lib, "ncd_create");
    auto version = (decltype(&ncd_version))dlsym(lib, "ncd_version");
    c->library = lib;
    c->forward = (decltype(&ncd_attention_forward))dlsym(lib, "ncd_attention_forward");
    c->backward = (decltype(&ncd_attention_backward))dlsym(lib, "ncd_attention_backward");
    c->error = (decltype(&ncd_error))dlsym(lib, "ncd_error");
    c->destroy = (decltype(&ncd_destroy))dlsym(lib, "ncd_destroy");
    if (!create || !version || !c->forward || !c->backward || !c->error || !c->destroy) {
        snprintf(ctx->attention_backend, sizeof ctx->attention_backend, "WMMA kernels (%s lacks a function: built from other sources)", path);
        free(c);
        dlclose(lib);
        return;
    }
    if (create(&c->state, ctx->stream) != 0) {
        snprintf(ctx->attention_backend, sizeof ctx->attention_backend, "WMMA kernels (cuDNN: %s)", c->error(c->state));
        c->destroy(c->state);
        free(c);
        dlclose(lib);
        return;
    }
    size_t v = version();
    snprintf(ctx->attention_backend, sizeof ctx->attention_backend, "cuDNN %zu.%zu fused flash attention", v / 10000, (v / 100) % 100);
    ctx->cudnn = c;
    ctx->use_cudnn = 1;
}

int nc_attention_backend(nc_context *ctx, char *name, int name_len) {
    if (name && name_len > 0) snprintf(name, name_len, "%s", ctx->use_cudnn ? ctx->attention_backend : (ctx->cudnn ? "WMMA kernels (selected)" : ctx->attention_backend));
    return 0;
}

int nc_attention_select(nc_context *ctx, int cudnn) {
    if (cudnn && !ctx->cudnn) return nc_fail(ctx, "nc_attention_select", ctx->attention_backend);
    ctx->use_cudnn = cudnn != 0;
    return 0;
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
    if (nc_malloc(ctx, &ctx->workspace, (int64_t)ctx->workspace_bytes)) return 1;
    load_cudnn(ctx);
    return 0;
}

void nc_destroy(nc_context *ctx) {
    if (!ctx) return;
    if (ctx->stream) cudaStreamSynchronize(ctx->stream);
    nc_nccl_destroy(ctx);
    nc_matmul_plans_destroy(ctx);
    if (ctx->cudnn) {
        ctx->cudnn->destroy(ctx->cudnn->state);
        dlclose(ctx->cudnn->library);
        free(ctx->cudnn);
    }
    nc_cache_destroy(&ctx->cache, device_free, ctx);  // the workspace and scratch included
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

int nc_malloc(nc_context *ctx, void **ptr, int64_t bytes) {
    ctx->error[0] = 0;
    if (nc_cache_alloc(&ctx->cache, ptr, bytes, device_alloc, device_free, ctx)) {
        char why[sizeof ctx->error];
        snprintf(why, sizeof why, "%s", ctx->error[0] ? ctx->error : "out of host memory for the allocator's lists");
        return nc_fail(ctx, "nc_malloc", why);
    }
    return 0;
}

int nc_free(nc_context *ctx, void *ptr) {
    // into the cache, not cudaFree (which waits for the device): every op runs on the context's one stream, so work
    // queued after a later nc_malloc of this block runs after the work that used it before
    if (nc_cache_free(&ctx->cache, ptr, device_free, ctx)) return nc_fail(ctx, "nc_free", "a pointer nc_malloc did not hand out");
    return 0;
}

int nc_memory_info(nc_context *ctx, int64_t *free_bytes, int64_t *total_bytes, int64_t *peak_bytes) {
    size_t f = 0, t = 0;
    NC_CUDA(ctx, cudaMemGetInfo(&f, &t));
    if (free_bytes) *free_bytes = (int64_t)f;
    if (total_bytes) *total_bytes = (int64_t)t;
    if (peak_bytes) *peak_bytes = ctx->cache.peak_bytes_in_use;
    return 0;
}

int nc_allocator_stats(nc_context *ctx, int64_t *bytes_in_use, int64_t *peak_bytes, int64_t *reserved_bytes,
                       int64_t *device_allocations) {
    if (bytes_in_use) *bytes_in_use = ctx->cache.bytes_in_use;
    if (peak_bytes) *peak_bytes = ctx->cache.peak_bytes_in_use;
    if (reserved_bytes) *reserved_bytes = ctx->cache.bytes_reserved;
    if (device_allocations) *device_allocations = ctx->cache.device_allocations;
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
