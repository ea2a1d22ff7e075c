// Which kernel set our C kernels run: the widest the CPU has and the OS lets it use, unless NANOCHAT_KERNELS
// (portable, avx2, avx512: to compare them on one machine) or a test (nc_kernel_choice) asks for a narrower one.
// Every kernel asks here, so one switch moves all of them.
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
        from_env = v && !strcmp(v, "portable") ? 0 : v && !strcmp(v, "avx2") ? 1 : 2;
    }
    int want = nc_kernel_choice >= 0 ? nc_kernel_choice : from_env;
    int have = nc_kernel_supported();
    return have < want ? have : want;
}
