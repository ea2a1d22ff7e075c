// The core clock as the core runs it: a chain of dependent integer adds retires one add per cycle on every x86 core
// since the Pentium Pro, so adds per second is cycles per second. Virtual machines report the nominal clock in
// /proc/cpuinfo while the core boosts above it; MFU needs the clock the FMA pipes really run at.
#include "ckernels.h"
#include <stdint.h>
#include <time.h>

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

double nc_measure_clock_ghz(double seconds) {
    double best = 0;
    double end = seconds_now() + seconds;
    while (seconds_now() < end) {
        uint64_t x = 0, iterations = 200000;  // about 1 ms: short enough to fit between other processes' time slices
        double t0 = seconds_now();
#if defined(__x86_64__)
        // 16 dependent adds an iteration: the loop's own decrement and branch run beside them
        uint64_t n = iterations;
        __asm__ volatile(
            "1:\n\t"
            "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
            "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
            "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
            "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
            "dec %1\n\tjnz 1b\n\t"
            : "+r"(x), "+r"(n) : : "cc");
#else
        return 0;  // no portable way to count cycles: the caller keeps the clock the system reports
#endif
        double dt = seconds_now() - t0;
        double ghz = 16.0 * (double)iterations / dt / 1e9;
        if (ghz > best) best = ghz;
        (void)x;
    }
    return best;
}
