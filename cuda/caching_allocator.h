// The caching allocator behind nc_malloc and nc_free (context.cu on the GPU; host_emulation.c on the host, where the
// same code is tested). A freed block is kept and handed out again to a later request of its size (requests are rounded
// up to 512 bytes), so after a training run's first step its steps call neither cudaMalloc nor cudaFree (each
// synchronises the device). Only the same size is reused: a block handed to a smaller request would be missing when
// its own size is asked for again, and the steps after the first would allocate (measured: two more in step 2 of the
// emulated d2 run with "at most twice the request"); a step repeats its sizes, so exact reuse is what keeps it steady. What it reports is
// its own bookkeeping: bytes handed out now and at the most (as PyTorch's memory_allocated and
// max_memory_allocated), bytes held from the device, and how many device allocations it has made.
// Header-only, C and C++; the device's own allocation calls come in as function pointers.
#pragma once
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct nc_cached_block {
    void *ptr;
    int64_t bytes;
} nc_cached_block;

typedef struct nc_caching_allocator {
    nc_cached_block *cached;  // freed, ready to hand out again
    int cached_count, cached_capacity;
    nc_cached_block *live;    // handed out (their sizes, for the free)
    int live_count, live_capacity;
    int64_t bytes_in_use, peak_bytes_in_use, bytes_reserved, device_allocations;
} nc_caching_allocator;

// the device's allocation and release: 0 on success
typedef int (*nc_raw_alloc_fn)(void *ctx, void **ptr, int64_t bytes);
typedef void (*nc_raw_free_fn)(void *ctx, void *ptr);

static inline int nc_block_push(nc_cached_block **list, int *count, int *capacity, nc_cached_block b) {
    if (*count == *capacity) {
        int grown_capacity = *capacity ? 2 * *capacity : 64;
        nc_cached_block *grown = (nc_cached_block *)realloc(*list, (size_t)grown_capacity * sizeof(nc_cached_block));
        if (!grown) return 1;
        *list = grown;
        *capacity = grown_capacity;
    }
    (*list)[(*count)++] = b;
    return 0;
}

// Gives every cached (free) block back to the device.
static inline void nc_cache_release(nc_caching_allocator *a, nc_raw_free_fn raw_free, void *ctx) {
    for (int i = 0; i < a->cached_count; i++) {
        raw_free(ctx, a->cached[i].ptr);
        a->bytes_reserved -= a->cached[i].bytes;
    }
    a->cached_count = 0;
}

// Hands out `bytes`: a cached block that fits, else a new one from the device (when that fails, after giving the
// cached blocks back, once more). Returns 1 when the device has no room.
static inline int nc_cache_alloc(nc_caching_allocator *a, void **ptr, int64_t bytes, nc_raw_alloc_fn raw_alloc,
                                 nc_raw_free_fn raw_free, void *ctx) {
    int64_t size = bytes <= 0 ? 512 : (bytes + 511) / 512 * 512;
    int best = -1;
    for (int i = 0; i < a->cached_count; i++) {
        int64_t b = a->cached[i].bytes;
        if (b == size) { best = i; break; }
    }
    nc_cached_block block;
    if (best >= 0) {
        block = a->cached[best];
        a->cached[best] = a->cached[--a->cached_count];
    } else {
        void *p = 0;
        if (raw_alloc(ctx, &p, size) != 0) {
            nc_cache_release(a, raw_free, ctx);
            if (raw_alloc(ctx, &p, size) != 0) return 1;
        }
        block.ptr = p;
        block.bytes = size;
        a->bytes_reserved += size;
        a->device_allocations++;
    }
    if (nc_block_push(&a->live, &a->live_count, &a->live_capacity, block) != 0) {
        nc_block_push(&a->cached, &a->cached_count, &a->cached_capacity, block);  // keep it for later
        return 1;
    }
    a->bytes_in_use += block.bytes;
    if (a->bytes_in_use > a->peak_bytes_in_use) a->peak_bytes_in_use = a->bytes_in_use;
    *ptr = block.ptr;
    return 0;
}

// Takes `ptr` back into the cache (a null pointer is nothing to free). Returns 1 when this allocator did not hand
// it out.
static inline int nc_cache_free(nc_caching_allocator *a, void *ptr, nc_raw_free_fn raw_free, void *ctx) {
    if (!ptr) return 0;
    for (int i = a->live_count - 1; i >= 0; i--) {  // the newest first: scratch is freed soon after it is taken
        if (a->live[i].ptr != ptr) continue;
        nc_cached_block block = a->live[i];
        a->live[i] = a->live[--a->live_count];
        a->bytes_in_use -= block.bytes;
        if (nc_block_push(&a->cached, &a->cached_count, &a->cached_capacity, block) != 0) {
            raw_free(ctx, block.ptr);  // no host memory to remember it: back to the device
            a->bytes_reserved -= block.bytes;
        }
        return 0;
    }
    return 1;
}

// Everything back to the device, at the context's end.
static inline void nc_cache_destroy(nc_caching_allocator *a, nc_raw_free_fn raw_free, void *ctx) {
    nc_cache_release(a, raw_free, ctx);
    for (int i = 0; i < a->live_count; i++) raw_free(ctx, a->live[i].ptr);
    free(a->cached);
    free(a->live);
    memset(a, 0, sizeof *a);
}
