// Collectives between GPUs through NCCL, loaded with dlopen on first use (libnccl.so.2, or $NANOCHAT_NCCL_LIB): the
// library builds without NCCL and a one-GPU run never loads it. NCCL's types are declared here as its ABI has them
// (checked against nccl.h by static_assert when the build finds the header: cuda/build.sh looks beside nvcc and in
// PyPI's nvidia-nccl-cu13).
//
// Ordering: the collectives run on their own stream. Each starts after everything the compute stream had queued
// when it was called (an event the comm stream waits on), so a gradient is reduced as soon as the kernels that made
// it have run while the compute stream goes on with the backward; nc_nccl_wait makes the compute stream wait for
// every collective started so far (an event the other way). The host never blocks on either.
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

#include "common.cuh"

#if __has_include(<nccl.h>)
#include <nccl.h>
#define NC_HAVE_NCCL_HEADER 1
#endif

namespace {
// NCCL's ABI, as nccl.h declares it (2.x)
typedef int nccl_result;  // ncclResult_t
typedef void *nccl_comm;  // ncclComm_t
struct nccl_unique_id { char internal[128]; };
enum { NCCL_SUCCESS = 0, NCCL_IN_PROGRESS = 7, NCCL_FLOAT32 = 7, NCCL_AVG = 4 };

#ifdef NC_HAVE_NCCL_HEADER
static_assert(sizeof(nccl_unique_id) == sizeof(ncclUniqueId), "ncclUniqueId's size");
static_assert(NCCL_SUCCESS == (int)ncclSuccess && NCCL_IN_PROGRESS == (int)ncclInProgress, "ncclResult_t's values");
static_assert(NCCL_FLOAT32 == (int)ncclFloat32 && NCCL_AVG == (int)ncclAvg, "ncclDataType_t / ncclRedOp_t values");
static_assert(sizeof(nccl_result) == sizeof(ncclResult_t) && sizeof(nccl_comm) == sizeof(ncclComm_t), "handle sizes");
#endif

struct nccl_api {
    nccl_result (*GetVersion)(int *);
    nccl_result (*GetUniqueId)(nccl_unique_id *);
    nccl_result (*CommInitRank)(nccl_comm *, int, nccl_unique_id, int);
    nccl_result (*AllReduce)(const void *, void *, size_t, int, int, nccl_comm, cudaStream_t);
    nccl_result (*ReduceScatter)(const void *, void *, size_t, int, int, nccl_comm, cudaStream_t);
    nccl_result (*Reduce)(const void *, void *, size_t, int, int, int, nccl_comm, cudaStream_t);
    nccl_result (*AllGather)(const void *, void *, size_t, int, nccl_comm, cudaStream_t);
    nccl_result (*CommGetAsyncError)(nccl_comm, nccl_result *);
    nccl_result (*CommAbort)(nccl_comm);
    nccl_result (*CommDestroy)(nccl_comm);
    const char *(*GetErrorString)(nccl_result);
    const char *(*GetLastError)(nccl_comm);
};
}  // namespace

struct nc_nccl {
    void *library;
    nccl_api api;
    nccl_comm comm;
    int rank, nranks;
    cudaStream_t stream;      // the collectives' stream
    cudaEvent_t queued;       // compute work queued before a collective
    cudaEvent_t collectives;  // the collectives started so far
    volatile double waited_at;  // host clock when `collectives` was last recorded (0: never)
};

static double monotonic_seconds() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int nccl_fail(nc_context *ctx, const char *what, nccl_result r) {
    nc_nccl *n = ctx->nccl;
    char detail[384];
    const char *last = n && n->comm && n->api.GetLastError ? n->api.GetLastError(n->comm) : "";
    snprintf(detail, sizeof detail, "%s%s%s", n && n->api.GetErrorString ? n->api.GetErrorString(r) : "NCCL error",
             last && *last ? ": " : "", last ? last : "");
    return nc_fail(ctx, what, detail);
}

#define NCCL_CALL(ctx, what, call)                                  \
    do {                                                            \
        nccl_result r_ = (call);                                    \
        if (r_ != NCCL_SUCCESS) return nccl_fail(ctx, what, r_);    \
    } while (0)

// Loads NCCL into the context (once).
static int load_nccl(nc_context *ctx) {
    if (ctx->nccl) return 0;
    const char *given = getenv("NANOCHAT_NCCL_LIB");
    const char *path = given && *given ? given : "libnccl.so.2";
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) return nc_fail(ctx, "loading NCCL (install it, or set NANOCHAT_NCCL_LIB to libnccl.so.2)", dlerror());
    nc_nccl *n = (nc_nccl *)calloc(1, sizeof(nc_nccl));
    if (!n) { dlclose(lib); return nc_fail(ctx, "loading NCCL", "out of host memory"); }
    n->library = lib;
#define NCCL_SYMBOL(field, name)                                                                          \
    if (!(*(void **)&n->api.field = dlsym(lib, name))) {                                                  \
        free(n);                                                                                          \
        dlclose(lib);                                                                                     \
        return nc_fail(ctx, "loading NCCL", "it lacks " name " (NCCL 2.13 or later is needed)");            \
    }
    NCCL_SYMBOL(GetVersion, "ncclGetVersion") NCCL_SYMBOL(GetUniqueId, "ncclGetUniqueId")
    NCCL_SYMBOL(CommInitRank, "ncclCommInitRank") NCCL_SYMBOL(AllReduce, "ncclAllReduce")
    NCCL_SYMBOL(ReduceScatter, "ncclReduceScatter") NCCL_SYMBOL(Reduce, "ncclReduce")
    NCCL_SYMBOL(AllGather, "ncclAllGather") NCCL_SYMBOL(CommGetAsyncError, "ncclCommGetAsyncError")
    NCCL_SYMBOL(CommAbort, "ncclCommAbort") NCCL_SYMBOL(CommDestroy, "ncclCommDestroy")
    NCCL_SYMBOL(GetErrorString, "ncclGetErrorString") NCCL_SYMBOL(GetLastError, "ncclGetLastError")
#undef NCCL_SYMBOL
    ctx->nccl = n;
    return 0;
}

int nc_nccl_version(nc_context *ctx, int *version) {
    if (load_nccl(ctx)) return 1;
    NCCL_CALL(ctx, "ncclGetVersion", ctx->nccl->api.GetVersion(version));
    return 0;
}

int nc_nccl_unique_id(nc_context *ctx, char *id, int id_len) {
    if (id_len < (int)sizeof(nccl_unique_id)) return nc_fail(ctx, "nc_nccl_unique_id", "the id takes 128 bytes");
    if (load_nccl(ctx)) return 1;
    nccl_unique_id u;
    NCCL_CALL(ctx, "ncclGetUniqueId", ctx->nccl->api.GetUniqueId(&u));
    memcpy(id, u.internal, sizeof u.internal);
    return 0;
}

int nc_nccl_init(nc_context *ctx, const char *id, int nranks, int rank) {
    if (load_nccl(ctx)) return 1;
    nc_nccl *n = ctx->nccl;
    if (n->comm) return nc_fail(ctx, "nc_nccl_init", "this context already has a communicator");
    nccl_unique_id u;
    memcpy(u.internal, id, sizeof u.internal);
    NC_CUDA(ctx, cudaSetDevice(ctx->device));
    NCCL_CALL(ctx, "ncclCommInitRank", n->api.CommInitRank(&n->comm, nranks, u, rank));
    n->rank = rank;
    n->nranks = nranks;
    NC_CUDA(ctx, cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking));
    NC_CUDA(ctx, cudaEventCreateWithFlags(&n->queued, cudaEventDisableTiming));
    NC_CUDA(ctx, cudaEventCreateWithFlags(&n->collectives, cudaEventDisableTiming));
    return 0;
}

// the comm stream waits for what the compute stream has queued
static int nccl_begin(nc_context *ctx, const char *what) {
    nc_nccl *n = ctx->nccl;
    if (!n || !n->comm) return nc_fail(ctx, what, "no NCCL communicator (nc_nccl_init first)");
    NC_CUDA(ctx, cudaEventRecord(n->queued, ctx->stream));
    NC_CUDA(ctx, cudaStreamWaitEvent(n->stream, n->queued, 0));
    return 0;
}

int nc_nccl_all_reduce(nc_context *ctx, float *buf, int64_t count) {
    if (nccl_begin(ctx, "ncclAllReduce")) return 1;
    nc_nccl *n = ctx->nccl;
    NCCL_CALL(ctx, "ncclAllReduce", n->api.AllReduce(buf, buf, (size_t)count, NCCL_FLOAT32, NCCL_AVG, n->comm, n->stream));
    return 0;
}

int nc_nccl_reduce_scatter(nc_context *ctx, const float *send, float *recv, int64_t count_per_rank) {
    if (nccl_begin(ctx, "ncclReduceScatter")) return 1;
    nc_nccl *n = ctx->nccl;
    NCCL_CALL(ctx, "ncclReduceScatter",
              n->api.ReduceScatter(send, recv, (size_t)count_per_rank, NCCL_FLOAT32, NCCL_AVG, n->comm, n->stream));
    return 0;
}

int nc_nccl_reduce(nc_context *ctx, const float *send, float *recv, int64_t count, int root) {
    if (nccl_begin(ctx, "ncclReduce")) return 1;
    nc_nccl *n = ctx->nccl;
    NCCL_CALL(ctx, "ncclReduce", n->api.Reduce(send, recv, (size_t)count, NCCL_FLOAT32, NCCL_AVG, root, n->comm, n->stream));
    return 0;
}

int nc_nccl_all_gather(nc_context *ctx, float *buf, int64_t count_per_rank) {
    if (nccl_begin(ctx, "ncclAllGather")) return 1;
    nc_nccl *n = ctx->nccl;
    // in place: this rank's block is already at its offset
    NCCL_CALL(ctx, "ncclAllGather", n->api.AllGather(buf + (int64_t)n->rank * count_per_rank, buf, (size_t)count_per_rank,
                                                     NCCL_FLOAT32, n->comm, n->stream));
    return 0;
}

int nc_nccl_wait(nc_context *ctx) {
    nc_nccl *n = ctx->nccl;
    if (!n || !n->comm) return 0;
    NC_CUDA(ctx, cudaEventRecord(n->collectives, n->stream));
    NC_CUDA(ctx, cudaStreamWaitEvent(ctx->stream, n->collectives, 0));
    n->waited_at = monotonic_seconds();
    return 0;
}

int nc_nccl_check(nc_context *ctx, double timeout_seconds, int *failed, char *reason, int reason_len) {
    *failed = 0;
    if (reason_len > 0) reason[0] = 0;
    nc_nccl *n = ctx->nccl;
    if (!n || !n->comm) return 0;
    nccl_result state = NCCL_SUCCESS;
    nccl_result r = n->api.CommGetAsyncError(n->comm, &state);
    if (r != NCCL_SUCCESS) state = r;
    if (state != NCCL_SUCCESS && state != NCCL_IN_PROGRESS) {
        *failed = 1;
        snprintf(reason, reason_len, "NCCL reports %s", n->api.GetErrorString(state));
        return 0;
    }
    double since = n->waited_at;
    if (timeout_seconds > 0 && since > 0 && cudaEventQuery(n->collectives) == cudaErrorNotReady
        && monotonic_seconds() - since > timeout_seconds) {
        *failed = 1;
        snprintf(reason, reason_len, "collectives unfinished after %.0f s", monotonic_seconds() - since);
    }
    return 0;
}

int nc_nccl_abort(nc_context *ctx) {
    nc_nccl *n = ctx->nccl;
    if (!n || !n->comm) return 0;
    NCCL_CALL(ctx, "ncclCommAbort", n->api.CommAbort(n->comm));
    n->comm = nullptr;
    return 0;
}

void nc_nccl_destroy(nc_context *ctx) {
    nc_nccl *n = ctx->nccl;
    if (!n) return;
    if (n->comm) {
        cudaStreamSynchronize(n->stream);
        n->api.CommDestroy(n->comm);
    }
    if (n->queued) cudaEventDestroy(n->queued);
    if (n->collectives) cudaEventDestroy(n->collectives);
    if (n->stream) cudaStreamDestroy(n->stream);
    dlclose(n->library);
    free(n);
    ctx->nccl = nullptr;
}
