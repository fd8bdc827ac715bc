/* Correctness: random signals and filters of many lengths against a double-precision FIR. */
#include <math.h>
#include "kbench.h"
#include "task.h"

static void check(long n, int taps) {
    float *x = kb_alloc((size_t)n * sizeof(float)), *h = kb_alloc((size_t)taps * sizeof(float));
    float *y = kb_alloc((size_t)(n + 1) * sizeof(float));
    for (long i = 0; i < n; i++) x[i] = (float)(2 * kb_unit() - 1);
    for (int k = 0; k < taps; k++) h[k] = (float)((2 * kb_unit() - 1) / taps);
    for (long i = 0; i <= n; i++) y[i] = NAN;
    y[n] = 12345.0f; /* canary past the end */
    fir_filter(x, n, h, taps, y);
    long bad = -1;
    double want = 0;
    for (long i = 0; i < n && bad < 0; i++) {
        double sum = 0;
        for (int k = 0; k < taps && k <= i; k++) sum += (double)h[k] * x[i - k];
        if (!kb_close(y[i], sum, 1e-4, 1e-5)) bad = i, want = sum;
    }
    char what[160];
    snprintf(what, sizeof what, "fir n=%ld taps=%d: y[%ld] = %g, expected %g", n, taps, bad, bad < 0 ? 0 : y[bad], want);
    kb_check(bad < 0 && y[n] == 12345.0f, what);
    free(x), free(h), free(y);
}

int main(void) {
    kb_seed();
    check(0, 4);
    check(1, 1);
    check(5, 8);
    check(8, 5);
    check(100, 64);
    check(1000, 3);
    for (int i = 0; i < 5; i++) check(kb_range(1, 20000), (int)kb_range(1, 128));
    return kb_finish();
}
