// The MPI calls nanochat makes, behind a small C ABI that Swift loads with dlopen (Sources/NanoChat/Distributed/
// MPICommunicator.swift). Built by mpi/build.sh with the system's mpicc, so it speaks whatever MPI is installed
// (Open MPI on Debian) while `swift build` needs no MPI at all.
//
// Errors: every call returns 0 or an MPI error code (the communicator's error handler is MPI_ERRORS_RETURN, so a
// failed collective reports instead of aborting inside MPI); ncmpi_error_string turns a code into text.
// Hangs: a watchdog thread aborts this process when one collective has waited longer than the timeout, so a
// stopped or deadlocked peer ends the job (mpirun then takes the other ranks down) instead of hanging it forever.
#include "nanochat_mpi.h"

#include <mpi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <limits.h>

static int g_rank = 0, g_size = 1;
static double g_timeout = 0;                 // seconds; 0 = no watchdog
static volatile double g_pending_since = 0;  // monotonic seconds when the current collective began, 0 = none
static const char *volatile g_pending_op = "";
static volatile long g_calls = 0;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *watchdog(void *arg) {
    (void)arg;
    for (;;) {
        sleep(1);
        double since = g_pending_since;
        if (since > 0 && now() - since > g_timeout) {
            fprintf(stderr,
                    "nanochat: rank %d of %d waited more than %.0f s in %s (collective #%ld): another rank has stopped "
                    "or died; ending this rank so that mpirun stops the job (NANOCHAT_COLLECTIVE_TIMEOUT sets the limit)\n",
                    g_rank, g_size, g_timeout, g_pending_op, g_calls);
            fflush(stderr);
            _exit(75);
        }
    }
    return NULL;
}

#define BEGIN(op) do { g_pending_op = (op); g_calls++; g_pending_since = now(); } while (0)
#define END() do { g_pending_since = 0; } while (0)

int ncmpi_init(int *rank, int *size, int *local_rank, int *local_size, double timeout_seconds) {
    int provided = 0;
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return rc;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    // ranks sharing this machine: the cores are split among them
    MPI_Comm local;
    rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &local);
    if (rc != MPI_SUCCESS) return rc;
    MPI_Comm_rank(local, local_rank);
    MPI_Comm_size(local, local_size);
    MPI_Comm_free(&local);
    *rank = g_rank;
    *size = g_size;
    g_timeout = timeout_seconds;
    if (timeout_seconds > 0) {
        pthread_t t;
        if (pthread_create(&t, NULL, watchdog, NULL) == 0) pthread_detach(t);
    }
    return MPI_SUCCESS;
}

const char *ncmpi_error_string(int code) {
    static char text[MPI_MAX_ERROR_STRING + 1];
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "MPI error %d", code);
    return text;
}

void ncmpi_processor_name(char *out, int capacity) {
    char name[MPI_MAX_PROCESSOR_NAME];
    int len = 0;
    MPI_Get_processor_name(name, &len);
    snprintf(out, capacity, "%.*s", len, name);
}

// MPI counts are ints: long buffers go in pieces of at most 2^30 elements
#define PIECE (1L << 30)

// in place, in pieces of at most 2^30 elements of `size` bytes
static int allreduce(void *buf, long count, MPI_Datatype type, long size, MPI_Op op, const char *name) {
    BEGIN(name);
    int rc = MPI_SUCCESS;
    for (long off = 0; off < count && rc == MPI_SUCCESS; off += PIECE) {
        long n = count - off < PIECE ? count - off : PIECE;
        rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * size, (int)n, type, op, MPI_COMM_WORLD);
    }
    END();
    return rc;
}

int ncmpi_allreduce_sum_f32(float *buf, long count) { return allreduce(buf, count, MPI_FLOAT, 4, MPI_SUM, "all-reduce"); }

int ncmpi_allreduce_sum_f64(double *buf, long count) { return allreduce(buf, count, MPI_DOUBLE, 8, MPI_SUM, "all-reduce"); }

int ncmpi_allreduce_max_f64(double *buf, long count) { return allreduce(buf, count, MPI_DOUBLE, 8, MPI_MAX, "all-reduce (max)"); }

// send holds size * count_per_rank values; rank r receives the sum of every rank's block r
int ncmpi_reduce_scatter_sum_f32(const float *send, float *recv, long count_per_rank) {
    if (count_per_rank > INT_MAX) return MPI_ERR_COUNT;
    BEGIN("reduce-scatter");
    int rc = MPI_Reduce_scatter_block(send, recv, (int)count_per_rank, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    END();
    return rc;
}

// recv holds size * count_per_rank values; send == NULL means this rank's block already sits in recv
int ncmpi_allgather_f32(const float *send, float *recv, long count_per_rank) {
    if (count_per_rank > INT_MAX) return MPI_ERR_COUNT;
    BEGIN("all-gather");
    int rc = send ? MPI_Allgather(send, (int)count_per_rank, MPI_FLOAT, recv, (int)count_per_rank, MPI_FLOAT, MPI_COMM_WORLD)
                  : MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, recv, (int)count_per_rank, MPI_FLOAT, MPI_COMM_WORLD);
    END();
    return rc;
}

int ncmpi_broadcast(void *buf, long bytes, int root) {
    BEGIN("broadcast");
    int rc = MPI_SUCCESS;
    for (long off = 0; off < bytes && rc == MPI_SUCCESS; off += PIECE) {
        long n = bytes - off < PIECE ? bytes - off : PIECE;
        rc = MPI_Bcast((char *)buf + off, (int)n, MPI_BYTE, root, MPI_COMM_WORLD);
    }
    END();
    return rc;
}

// the pending nonblocking requests, in the order they were started
static MPI_Request *g_requests = NULL;
static int g_request_count = 0, g_request_capacity = 0;

static int add_request(MPI_Request r) {
    if (g_request_count == g_request_capacity) {
        int capacity = g_request_capacity ? 2 * g_request_capacity : 256;
        MPI_Request *grown = realloc(g_requests, capacity * sizeof *grown);
        if (!grown) return MPI_ERR_NO_MEM;
        g_requests = grown;
        g_request_capacity = capacity;
    }
    g_requests[g_request_count++] = r;
    return MPI_SUCCESS;
}

int ncmpi_start_allreduce_sum_f32(float *buf, long count) {
    int rc = MPI_SUCCESS;
    for (long off = 0; off < count && rc == MPI_SUCCESS; off += PIECE) {
        long n = count - off < PIECE ? count - off : PIECE;
        MPI_Request r;
        rc = MPI_Iallreduce(MPI_IN_PLACE, buf + off, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &r);
        if (rc == MPI_SUCCESS) rc = add_request(r);
    }
    return rc;
}

int ncmpi_start_reduce_scatter_sum_f32(const float *send, float *recv, long count_per_rank) {
    if (count_per_rank > INT_MAX) return MPI_ERR_COUNT;
    MPI_Request r;
    int rc = MPI_Ireduce_scatter_block(send, recv, (int)count_per_rank, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &r);
    return rc == MPI_SUCCESS ? add_request(r) : rc;
}

int ncmpi_start_reduce_sum_f32(const float *send, float *recv, long count, int root) {
    if (count > INT_MAX) return MPI_ERR_COUNT;
    MPI_Request r;
    int rc = MPI_Ireduce(send, g_rank == root ? recv : NULL, (int)count, MPI_FLOAT, MPI_SUM, root, MPI_COMM_WORLD, &r);
    return rc == MPI_SUCCESS ? add_request(r) : rc;
}

int ncmpi_start_allgather_f32(float *recv, long count_per_rank) {
    if (count_per_rank > INT_MAX) return MPI_ERR_COUNT;
    MPI_Request r;
    int rc = MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, recv, (int)count_per_rank, MPI_FLOAT, MPI_COMM_WORLD, &r);
    return rc == MPI_SUCCESS ? add_request(r) : rc;
}

int ncmpi_progress(void) {
    if (g_request_count == 0) return MPI_SUCCESS;
    int done = 0;
    return MPI_Testall(g_request_count, g_requests, &done, MPI_STATUSES_IGNORE);
}

int ncmpi_wait_all(void) {
    if (g_request_count == 0) return MPI_SUCCESS;
    BEGIN("waiting for the gradient collectives");
    int rc = MPI_Waitall(g_request_count, g_requests, MPI_STATUSES_IGNORE);
    END();
    g_request_count = 0;
    return rc;
}

int ncmpi_barrier(void) {
    BEGIN("barrier");
    int rc = MPI_Barrier(MPI_COMM_WORLD);
    END();
    return rc;
}

void ncmpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

int ncmpi_finalize(void) { return MPI_Finalize(); }
