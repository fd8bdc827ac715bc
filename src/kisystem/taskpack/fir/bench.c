/* Times fir_filter against the reference on the same random signal (see kbench.h). */
#include "kbench.h"
#include "task.h"

#define TAPS 64

static long n;
static float *x, *y, h[TAPS];

__attribute__((noinline)) void kisystem_bench_candidate(void) { fir_filter(x, n, h, TAPS, y); }
__attribute__((noinline)) void kisystem_bench_reference(void) { ref_fir_filter(x, n, h, TAPS, y); }

int main(void) {
    kb_seed();
    n = kb_env_long("KISYSTEM_BENCH_SIZE", 1L << 18, 1, 1L << 28);
    x = kb_alloc((size_t)n * sizeof(float)), y = kb_alloc((size_t)n * sizeof(float));
    for (long i = 0; i < n; i++) x[i] = (float)(2 * kb_unit() - 1);
    for (int k = 0; k < TAPS; k++) h[k] = (float)((2 * kb_unit() - 1) / TAPS);
    kb_bench(kisystem_bench_candidate, kisystem_bench_reference);
    free(x), free(y);
    return 0;
}
