// Which kernel set runs: the widest the CPU has (and the OS lets it use), as chosen by NANOCHAT_KERNELS (portable,
// avx2, avx512) or by a test. AVX-512 is opt-in: on this project's AMD EPYC (Zen 4, whose 512-bit operations run
// as two 256-bit halves) the AVX-512 int8 one-row product measured 0.70x the AVX2 one at d12 (161-164 against
// 230-233 tok/s, memory-bound decode), so AVX2 stays the default until AVX-512 is measured to pay on a CPU with
// full-width units.
#include "ckernels.h"
#include <stdlib.h>
#include <string.h>

int nc_kernel_choice = -1;

int nc_kernel_supported(void) {
    static int have = -1;
    if (have < 0) {
        nc_cpu_features f = nc_cpu_detect();
        have = f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.fma ? 2 : f.avx2 && f.fma ? 1 : 0;
    }
    return have;
}

int nc_kernel_level(void) {
    static int from_env = -1;
    if (from_env < 0) {
        const char *v = getenv("NANOCHAT_KERNELS");
        from_env = v && !strcmp(v, "portable") ? 0 : v && !strcmp(v, "avx512") ? 2 : 1;
    }
    int want = nc_kernel_choice >= 0 ? nc_kernel_choice : from_env;
    int have = nc_kernel_supported();
    return have < want ? have : want;
}
