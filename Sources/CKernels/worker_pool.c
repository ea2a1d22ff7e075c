// The worker threads behind Threading.parallelFor (see ckernels.h). Decoding one token runs about fifty short
// parallel regions (every product, attention, the LM head), each tens of microseconds long. Waking a sleeping
// thread for each one (what DispatchQueue.concurrentPerform does) costs 13 to 18 microseconds a region measured on
// this project's 2-core machine: a fifth of a d6 decode step. So the helpers here stay awake between regions,
// polling with the CPU's pause hint, and only go to sleep on a condition variable after spin_ns without work, or
// at once when nc_pool_park says other threads (BLAS's) are about to need the cores.
//
// One region at a time: the caller publishes (fn, ctx) and a ticket packing epoch | count | next index, then takes
// indices itself like any helper. Indices are claimed with compare-and-swap on the whole ticket, so a helper that
// is late for a region can never claim an index of the next one by mistake. A caller that finds the pool busy
// (a nested region, or a second thread) runs its indices inline.
#include "ckernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#define COUNT_BITS 20
#define INDEX_MASK ((1ull << COUNT_BITS) - 1)

static struct {
    int helpers;                  // threads besides the caller
    long spin_ns;                 // how long an idle helper polls before it sleeps
    _Atomic uint64_t ticket;      // epoch << 40 | count << 20 | next index
    _Atomic long completed;       // indices of the current region finished
    _Atomic int owner;            // 1 while a caller runs a region
    _Atomic int asleep;           // helpers waiting on `wake`
    _Atomic int parked;           // set by nc_pool_park: idle helpers sleep now rather than poll
    uint64_t epoch;               // written by the owner only
    nc_pool_fn fn;                // the region's work, published by the ticket's store
    void *ctx;
    pthread_mutex_t lock;
    pthread_cond_t wake;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static long elapsed_ns(const struct timespec *since) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - since->tv_sec) * 1000000000L + (now.tv_nsec - since->tv_nsec);
}

// Claims and runs indices of region `epoch` until none is left (or another region has begun).
static void run_indices(uint64_t epoch) {
    for (;;) {
        uint64_t t = atomic_load_explicit(&pool.ticket, memory_order_acquire);
        if (t >> 40 != epoch) return;
        uint64_t count = (t >> COUNT_BITS) & INDEX_MASK, next = t & INDEX_MASK;
        if (next >= count) return;
        if (!atomic_compare_exchange_weak_explicit(&pool.ticket, &t, t + 1, memory_order_acq_rel, memory_order_acquire))
            continue;
        pool.fn(pool.ctx, (long)next);
        atomic_fetch_add_explicit(&pool.completed, 1, memory_order_release);
    }
}

static void *helper_main(void *unused) {
    (void)unused;
    uint64_t seen = 0;
    for (;;) {
        uint64_t t = atomic_load_explicit(&pool.ticket, memory_order_acquire);
        if (t >> 40 == seen) {
            struct timespec start;
            clock_gettime(CLOCK_MONOTONIC, &start);
            for (long spins = 1; (t = atomic_load_explicit(&pool.ticket, memory_order_acquire)) >> 40 == seen; spins++) {
                nc_cpu_pause();
                if (spins % 256 && !atomic_load_explicit(&pool.parked, memory_order_relaxed)) continue;
                if (!atomic_load_explicit(&pool.parked, memory_order_relaxed) && elapsed_ns(&start) < pool.spin_ns) {
                    sched_yield();  // a BLAS thread that wants this core gets it
                    continue;
                }
                // idle for long: sleep until the next region (the owner checks `asleep` after publishing)
                pthread_mutex_lock(&pool.lock);
                atomic_fetch_add(&pool.asleep, 1);
                while ((t = atomic_load(&pool.ticket)) >> 40 == seen) pthread_cond_wait(&pool.wake, &pool.lock);
                atomic_fetch_sub(&pool.asleep, 1);
                pthread_mutex_unlock(&pool.lock);
                break;
            }
        }
        seen = t >> 40;
        run_indices(seen);
    }
    return NULL;
}

int nc_pool_start(int threads, long spin_ns) {
    if (pool.helpers > 0 || threads <= 1) return pool.helpers + 1;
    pool.spin_ns = spin_ns;
    int started = 0;
    for (int i = 0; i < threads - 1; i++) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&thread, &attr, helper_main, NULL) == 0) started++;
        pthread_attr_destroy(&attr);
    }
    pool.helpers = started;
    return started + 1;
}

void nc_pool_park(void) {
    if (!atomic_load_explicit(&pool.parked, memory_order_relaxed)) atomic_store_explicit(&pool.parked, 1, memory_order_relaxed);
}

void nc_pool_run(long count, nc_pool_fn fn, void *ctx) {
    if (count <= 0) return;
    int idle = 0;
    if (pool.helpers == 0 || count == 1 || (uint64_t)count > INDEX_MASK ||
        !atomic_compare_exchange_strong(&pool.owner, &idle, 1)) {
        for (long i = 0; i < count; i++) fn(ctx, i);
        return;
    }
    atomic_store_explicit(&pool.parked, 0, memory_order_relaxed);
    pool.fn = fn;
    pool.ctx = ctx;
    atomic_store_explicit(&pool.completed, 0, memory_order_relaxed);
    pool.epoch = (pool.epoch + 1) & ((1ull << 24) - 1);
    if (pool.epoch == 0) pool.epoch = 1;  // a helper that has seen nothing yet waits for an epoch other than 0
    atomic_store(&pool.ticket, pool.epoch << 40 | (uint64_t)count << COUNT_BITS);
    if (atomic_load(&pool.asleep) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    run_indices(pool.epoch);
    while (atomic_load_explicit(&pool.completed, memory_order_acquire) < count) nc_cpu_pause();
    atomic_store_explicit(&pool.owner, 0, memory_order_release);
}
