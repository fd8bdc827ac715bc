/* The FIR task's driver: test cases and benchmark (protocol: see kbench.h). */
#include <math.h>
#include "kbench.h"
#include "task.h"

static void random_signal(float *x, long n) {
    for (long i = 0; i < n; i++) x[i] = (float)(2 * kb_unit() - 1);
}

static void random_filter(float *h, int taps) {
    for (int k = 0; k < taps; k++) h[k] = (float)((2 * kb_unit() - 1) / taps);
}

static void test_case(long n, int taps) {
    float *x = kb_alloc((size_t)n * sizeof(float)), *h = kb_alloc((size_t)taps * sizeof(float));
    float *y = kb_alloc((size_t)(n + 1) * sizeof(float));
    random_signal(x, n);
    random_filter(h, taps);
    for (long i = 0; i < n; i++) y[i] = NAN; /* every output must be written */
    y[n] = 12345.0f;                         /* canary past the end */
    fir_filter(x, n, h, taps, y);
    kb_case("n=%ld/taps=%d", n, taps);
    kb_word(y[n] == 12345.0f ? "end-intact" : "wrote-past-the-end");
    kb_floats(y, n);
    kb_end();
    free(x), free(h), free(y);
}

static void tests(void) {
    static const long cases[][2] = {{0, 4}, {1, 1}, {5, 8}, {8, 5}, {100, 64}, {1000, 3}};
    for (int i = 0; i < 6; i++) test_case(cases[i][0], (int)cases[i][1]);
    for (int i = 0; i < 5; i++) test_case(kb_range(1, 20000), (int)kb_range(1, 128));
}

/* 262,144 samples through 64 taps; one sample changes between calls. */
static void bench(void) {
    enum { TAPS = 64 };
    long n = kb_bench_size(1L << 18, 1, 1L << 28);
    float *x = kb_alloc((size_t)n * sizeof(float)), *y = kb_alloc((size_t)n * sizeof(float)), h[TAPS];
    random_signal(x, n);
    random_filter(h, TAPS);
    for (long rep = 0, reps = kb_bench_reps(20); rep < reps; rep++) {
        x[kb_range(0, n - 1)] = (float)(2 * kb_unit() - 1);
        fir_filter(x, n, h, TAPS, y);
        kb_digest(rep);
        kb_float_digest(y, n);
        kb_end();
    }
    free(x), free(y);
}

int main(int argc, char **argv) {
    if (kb_start(argc, argv) == KB_TEST) tests();
    else bench();
    return kb_finish();
}
