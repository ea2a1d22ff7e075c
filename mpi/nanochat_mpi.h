// The C ABI of libnanochat_mpi.so (nanochat_mpi.c): the MPI calls nanochat makes. Swift loads the library with dlopen
// and calls these through the typed table of Sources/CNanoABI (which takes their types from this header).
// Every call returns 0 or an MPI error code; ncmpi_error_string turns a code into text.
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

// MPI_Init, this rank's place in the job (and on its machine), and the watchdog that ends a rank whose collective
// has waited longer than timeout_seconds (0: no watchdog)
int ncmpi_init(int *rank, int *size, int *local_rank, int *local_size, double timeout_seconds);
const char *ncmpi_error_string(int code);
void ncmpi_processor_name(char *out, int capacity);
// in place, summed (or the maximum) over the ranks
int ncmpi_allreduce_sum_f32(float *buf, long count);
int ncmpi_allreduce_sum_f64(double *buf, long count);
int ncmpi_allreduce_max_f64(double *buf, long count);
// send holds size * count_per_rank values; rank r receives the sum of every rank's block r
int ncmpi_reduce_scatter_sum_f32(const float *send, float *recv, long count_per_rank);
// recv holds size * count_per_rank values; send == NULL means this rank's block already sits in recv
int ncmpi_allgather_f32(const float *send, float *recv, long count_per_rank);
int ncmpi_broadcast(void *buf, long bytes, int root);
// Nonblocking collectives (MPI-3), for reducing gradients while the backward still runs: each returns at once and
// joins this rank's pending requests; its buffers stay untouched by the caller until ncmpi_wait_all. Every rank starts
// the same ones in the same order.
int ncmpi_start_allreduce_sum_f32(float *buf, long count);
int ncmpi_start_reduce_scatter_sum_f32(const float *send, float *recv, long count_per_rank);
// the sum of every rank's send into root's recv (recv is ignored on the other ranks)
int ncmpi_start_reduce_sum_f32(const float *send, float *recv, long count, int root);
// in place: rank r's block already sits in recv
int ncmpi_start_allgather_f32(float *recv, long count_per_rank);
// lets the pending requests advance (Open MPI moves nonblocking collectives only inside MPI calls); returns at once
int ncmpi_progress(void);
// waits until every pending request has finished (under the watchdog)
int ncmpi_wait_all(void);
int ncmpi_barrier(void);
void ncmpi_abort(int code);
int ncmpi_finalize(void);

#ifdef __cplusplus
}
#endif
