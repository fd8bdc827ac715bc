/* The biquad task's driver: test cases and benchmark (protocol: see kbench.h). */
#include <math.h>
#include "kbench.h"
#include "task.h"

static const char *const MODES[] = {"whole", "split", "in-place"};

static void random_sections(float *c, int sections) { /* stable: poles inside radius 0.95 */
    for (int s = 0; s < sections; s++) {
        double r = 0.3 + 0.65 * kb_unit(), theta = 3.14159265358979 * kb_unit();
        c[5 * s] = (float)(0.5 * (2 * kb_unit() - 1));
        c[5 * s + 1] = (float)(0.5 * (2 * kb_unit() - 1));
        c[5 * s + 2] = (float)(0.5 * (2 * kb_unit() - 1));
        c[5 * s + 3] = (float)(-2 * r * cos(theta));
        c[5 * s + 4] = (float)(r * r);
    }
}

/* mode 0: one call; 1: two calls, the state carried over; 2: in place (y == x). */
static void test_case(int sections, long n, int mode) {
    float c[5 * 16], state[32];
    float *x = kb_alloc((size_t)n * sizeof(float)), *y = kb_alloc((size_t)n * sizeof(float));
    random_sections(c, sections);
    for (int i = 0; i < 2 * sections; i++) state[i] = (float)(0.1 * (2 * kb_unit() - 1));
    for (long i = 0; i < n; i++) x[i] = (float)(2 * kb_unit() - 1), y[i] = NAN;
    long half = n / 2;
    if (mode == 0) biquad_cascade(c, sections, state, x, y, n);
    if (mode == 1) {
        biquad_cascade(c, sections, state, x, y, half);
        biquad_cascade(c, sections, state, x + half, y + half, n - half);
    }
    if (mode == 2) {
        for (long i = 0; i < n; i++) y[i] = x[i];
        biquad_cascade(c, sections, state, y, y, n);
    }
    kb_case("sections=%d/n=%ld/%s", sections, n, MODES[mode]);
    kb_word("state");
    kb_floats(state, 2 * sections);
    kb_word("y");
    kb_floats(y, n);
    kb_end();
    free(x), free(y);
}

static void tests(void) {
    for (int mode = 0; mode < 3; mode++) {
        test_case(1, 1, mode);
        test_case(1, 100, mode);
        test_case(4, 1001, mode);
        test_case((int)kb_range(1, 16), kb_range(2, 30000), mode);
    }
    test_case(0, 10, 0);
}

/* 524,288 samples through 8 sections; the state carries over and one sample changes between calls. */
static void bench(void) {
    enum { SECTIONS = 8 };
    long n = kb_bench_size(1L << 19, 1, 1L << 28);
    float *x = kb_alloc((size_t)n * sizeof(float)), *y = kb_alloc((size_t)n * sizeof(float));
    float coeffs[5 * SECTIONS], state[2 * SECTIONS] = {0};
    for (long i = 0; i < n; i++) x[i] = (float)(2 * kb_unit() - 1);
    for (int s = 0; s < SECTIONS; s++) {
        double r = 0.5 + 0.45 * kb_unit(), theta = 3.0 * kb_unit();
        coeffs[5 * s] = 0.3f, coeffs[5 * s + 1] = 0.2f, coeffs[5 * s + 2] = 0.1f;
        coeffs[5 * s + 3] = (float)(-2 * r * cos(theta)), coeffs[5 * s + 4] = (float)(r * r);
    }
    for (long rep = 0, reps = kb_bench_reps(20); rep < reps; rep++) {
        x[kb_range(0, n - 1)] = (float)(2 * kb_unit() - 1);
        biquad_cascade(coeffs, SECTIONS, state, x, y, n);
        kb_digest(rep);
        kb_word("state");
        kb_floats(state, 2 * SECTIONS);
        kb_word("y");
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
