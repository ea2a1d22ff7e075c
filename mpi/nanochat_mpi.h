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
int ncmpi_barrier(void);
void ncmpi_abort(int code);
int ncmpi_finalize(void);

#ifdef __cplusplus
}
#endif
