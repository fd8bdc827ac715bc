/* Times biquad_cascade against the reference on the same random audio (see kbench.h). */
#include <math.h>
#include "kbench.h"
#include "task.h"

#define SECTIONS 8

static long n;
static float *x, *y, coeffs[5 * SECTIONS], state[2 * SECTIONS];

__attribute__((noinline)) void kisystem_bench_candidate(void) { biquad_cascade(coeffs, SECTIONS, state, x, y, n); }
__attribute__((noinline)) void kisystem_bench_reference(void) {
    ref_biquad_cascade(coeffs, SECTIONS, state, x, y, n);
}

int main(void) {
    kb_seed();
    n = kb_env_long("KISYSTEM_BENCH_SIZE", 1L << 19, 1, 1L << 28);
    x = kb_alloc((size_t)n * sizeof(float)), y = kb_alloc((size_t)n * sizeof(float));
    for (long i = 0; i < n; i++) x[i] = (float)(2 * kb_unit() - 1);
    for (int s = 0; s < SECTIONS; s++) {
        double r = 0.5 + 0.45 * kb_unit(), theta = 3.0 * kb_unit();
        coeffs[5 * s] = 0.3f, coeffs[5 * s + 1] = 0.2f, coeffs[5 * s + 2] = 0.1f;
        coeffs[5 * s + 3] = (float)(-2 * r * cos(theta)), coeffs[5 * s + 4] = (float)(r * r);
    }
    kb_bench(kisystem_bench_candidate, kisystem_bench_reference);
    free(x), free(y);
    return 0;
}
