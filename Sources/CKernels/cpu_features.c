// What the CPU can run, from CPUID, and what the operating system lets it run, from XGETBV: AVX, AVX-512 and AMX
// need the OS to save their registers (XCR0). (Using AMX would also need Linux's per-process grant, arch_prctl
// ARCH_REQ_XCOMP_PERM; nothing uses AMX yet.)
#include "ckernels.h"
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>

static unsigned long long xcr0(void) {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

nc_cpu_features nc_cpu_detect(void) {
    nc_cpu_features f;
    memset(&f, 0, sizeof f);
    unsigned int a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return f;
    unsigned int max_leaf = a;
    memcpy(f.vendor, &b, 4); memcpy(f.vendor + 4, &d, 4); memcpy(f.vendor + 8, &c, 4);
    __get_cpuid(1, &a, &b, &c, &d);
    unsigned int base_family = (a >> 8) & 0xF, base_model = (a >> 4) & 0xF;
    f.family = (int)(base_family == 0xF ? base_family + ((a >> 20) & 0xFF) : base_family);
    f.model = (int)((base_family == 0x6 || base_family == 0xF) ? (((a >> 16) & 0xF) << 4) + base_model : base_model);
    f.sse42 = (c >> 20) & 1;
    int osxsave = (c >> 27) & 1;
    unsigned long long x = osxsave ? xcr0() : 0;
    int os_avx = (x & 0x6) == 0x6;               // SSE and AVX state
    int os_avx512 = os_avx && (x & 0xE0) == 0xE0; // opmask, upper ZMM, high ZMM state
    int os_amx = (x & 0x60000) == 0x60000;        // tile config and tile data
    f.avx = os_avx && ((c >> 28) & 1);
    f.fma = os_avx && ((c >> 12) & 1);
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        f.avx2 = os_avx && ((b >> 5) & 1);
        f.avx512f = os_avx512 && ((b >> 16) & 1);
        f.avx512dq = os_avx512 && ((b >> 17) & 1);
        f.avx512bw = os_avx512 && ((b >> 30) & 1);
        f.avx512vl = os_avx512 && ((b >> 31) & 1);
        f.avx512vnni = os_avx512 && ((c >> 11) & 1);
        f.amx_tile = os_amx && ((d >> 24) & 1);
        f.amx_int8 = os_amx && ((d >> 25) & 1);
        f.amx_bf16 = os_amx && ((d >> 22) & 1);
        __cpuid_count(7, 1, a, b, c, d);
        f.avx512bf16 = os_avx512 && ((a >> 5) & 1);
    }
    __get_cpuid(0x80000000, &a, &b, &c, &d);
    if (a >= 0x80000004) {
        unsigned int *brand = (unsigned int *)f.brand;
        for (unsigned int leaf = 0; leaf < 3; leaf++) __get_cpuid(0x80000002 + leaf, brand + 4 * leaf, brand + 4 * leaf + 1, brand + 4 * leaf + 2, brand + 4 * leaf + 3);
    }
    return f;
}

#else
nc_cpu_features nc_cpu_detect(void) {
    nc_cpu_features f;
    memset(&f, 0, sizeof f);
    return f;
}
#endif
