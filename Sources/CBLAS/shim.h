#include <cblas.h>
// OpenBLAS extensions used to hold one threading policy for the whole process.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
// OpenBLAS's report of itself: the kernel set (core) it runs and its build configuration (version first).
char *openblas_get_corename(void);
char *openblas_get_config(void);
