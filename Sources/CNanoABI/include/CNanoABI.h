// The C libraries nanochat loads at run time with dlopen (NanoChat's DynamicLibrary): the CUDA library
// (cuda/nanochat_cuda.h) and the MPI shim (mpi/nanochat_mpi.h). For each, a table of function pointers whose types
// are those of the library's own header (__typeof__ of each declaration, nothing copied by hand) and whose names are
// listed once (NC_CUDA_FUNCTIONS, NC_MPI_FUNCTIONS). Swift calls through these tables with the C signatures: an
// argument of the wrong type or in the wrong place does not compile, and a library that lacks a function is named
// when it loads. Adding a function to a library: declare it in its header and add its name to the list here.
// SwiftPM does not see a change to those headers (outside this target) in the Swift modules that were built against the
// table before: in an incremental build, make them rebuild too (touch their sources, or remove .build), or they keep
// the old layout of the table, and of every class holding it (the GPU), and read the wrong fields.
#pragma once

#include "../../../cuda/nanochat_cuda.h"
#include "../../../mpi/nanochat_mpi.h"

#define NC_CUDA_FUNCTIONS(X)                                                                                           \
    X(nc_create) X(nc_destroy) X(nc_error_string) X(nc_device_info) X(nc_malloc) X(nc_free) X(nc_copy_to_device)      \
    X(nc_copy_to_host) X(nc_synchronize) X(nc_zero) X(nc_copy_on_device) X(nc_memory_info) X(nc_allocator_stats) X(nc_matmul) X(nc_matmul_mixed) X(nc_matmul_bf16_out) X(nc_to_bf16) X(nc_from_bf16) X(nc_to_bf16_rows)               \
    X(nc_matmul_batched) X(nc_rmsnorm_forward) X(nc_mix_rmsnorm_forward) X(nc_rmsnorm_backward) X(nc_rotary_norm_forward) X(nc_rotary_norm_qk_forward)                       \
    X(nc_rotary_norm_backward) X(nc_rotary_norm_backward_bf16_rows) X(nc_attention_forward) X(nc_attention_backward) X(nc_attention_forward_bf16)          \
    X(nc_attention_backward_bf16) X(nc_attention_backend) X(nc_attention_select) X(nc_embedding_forward) X(nc_embedding_backward) X(nc_smear_forward)                \
    X(nc_smear_backward) X(nc_value_embedding_forward) X(nc_value_embedding_backward) X(nc_scalar_mix_forward)        \
    X(nc_scalar_mix_backward) X(nc_backout_forward) X(nc_backout_backward) X(nc_relu2_forward) X(nc_relu2_backward)   \
    X(nc_relu2_forward_bf16) X(nc_relu2_backward_bf16) X(nc_relu2_backward_from_output_bf16)                                                               \
    X(nc_axpby) X(nc_softcap) X(nc_dot) X(nc_kv_append) X(nc_cached_attention)                                                                             \
    X(nc_softcap_cross_entropy) X(nc_softcap_cross_entropy_bf16) X(nc_adamw_step) X(nc_muon_step) X(nc_nccl_version) X(nc_nccl_unique_id) X(nc_nccl_init) \
    X(nc_nccl_all_reduce) X(nc_nccl_reduce_scatter) X(nc_nccl_reduce) X(nc_nccl_all_gather) X(nc_nccl_wait)           \
    X(nc_nccl_check) X(nc_nccl_abort)

#define NC_MPI_FUNCTIONS(X)                                                                                            \
    X(ncmpi_init) X(ncmpi_error_string) X(ncmpi_processor_name) X(ncmpi_allreduce_sum_f32) X(ncmpi_allreduce_sum_f64) \
    X(ncmpi_allreduce_max_f64) X(ncmpi_reduce_scatter_sum_f32) X(ncmpi_allgather_f32) X(ncmpi_broadcast)              \
    X(ncmpi_barrier) X(ncmpi_abort) X(ncmpi_finalize) X(ncmpi_start_allreduce_sum_f32)                              \
    X(ncmpi_start_reduce_scatter_sum_f32) X(ncmpi_start_reduce_sum_f32) X(ncmpi_start_allgather_f32) X(ncmpi_progress) \
    X(ncmpi_wait_all)

#pragma clang assume_nonnull begin

#define NC_ABI_FIELD(name) __typeof__(name) *name;
typedef struct nc_cuda_api {
    NC_CUDA_FUNCTIONS(NC_ABI_FIELD)
} nc_cuda_api;
typedef struct ncmpi_api {
    NC_MPI_FUNCTIONS(NC_ABI_FIELD)
} ncmpi_api;
#undef NC_ABI_FIELD

/// Fills a table from a library opened with dlopen: NULL when every function was found, else the first missing
/// name. The table lives as long as the process (one per library loaded).
const nc_cuda_api *_Nullable nc_cuda_api_load(void *handle, const char *_Nullable *_Nonnull missing);
const ncmpi_api *_Nullable ncmpi_api_load(void *handle, const char *_Nullable *_Nonnull missing);

#pragma clang assume_nonnull end
