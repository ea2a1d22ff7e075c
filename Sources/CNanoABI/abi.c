// The tables of CNanoABI.h, filled with dlsym from the name lists.
#include "CNanoABI.h"

#include <dlfcn.h>
#include <stdlib.h>

#define NC_ABI_RESOLVE(name)                                                                                           \
    if (!(api->name = (__typeof__(api->name))dlsym(handle, #name))) {                                                 \
        *missing = #name;                                                                                             \
        free(api);                                                                                                    \
        return NULL;                                                                                                  \
    }

const nc_cuda_api *nc_cuda_api_load(void *handle, const char **missing) {
    nc_cuda_api *api = calloc(1, sizeof *api);
    *missing = api ? NULL : "memory for the table";
    if (!api) return NULL;
    NC_CUDA_FUNCTIONS(NC_ABI_RESOLVE)
    return api;
}

const ncmpi_api *ncmpi_api_load(void *handle, const char **missing) {
    ncmpi_api *api = calloc(1, sizeof *api);
    *missing = api ? NULL : "memory for the table";
    if (!api) return NULL;
    NC_MPI_FUNCTIONS(NC_ABI_RESOLVE)
    return api;
}
