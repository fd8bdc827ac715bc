/* Correctness: random stable cascades; whole buffers, split buffers (state carried over)
 * and in-place processing, against a straightforward implementation in this file. */
#include <math.h>
#include "kbench.h"
#include "task.h"

static void random_sections(float *c, int sections) {
    for (int s = 0; s < sections; s++) {
        double r = 0.3 + 0.65 * kb_unit(), theta = 3.14159265358979 * kb_unit();
        c[5 * s] = (float)(0.5 * (2 * kb_unit() - 1));
        c[5 * s + 1] = (float)(0.5 * (2 * kb_unit() - 1));
        c[5 * s + 2] = (float)(0.5 * (2 * kb_unit() - 1));
        c[5 * s + 3] = (float)(-2 * r * cos(theta));
        c[5 * s + 4] = (float)(r * r);
    }
}

static void expected(const float *c, int sections, float *state, const float *x, float *y, long n) {
    for (long i = 0; i < n; i++) {
        float v = x[i];
        for (int s = 0; s < sections; s++) {
            float out = c[5 * s] * v + state[2 * s];
            state[2 * s] = c[5 * s + 1] * v - c[5 * s + 3] * out + state[2 * s + 1];
            state[2 * s + 1] = c[5 * s + 2] * v - c[5 * s + 4] * out;
            v = out;
        }
        y[i] = v;
    }
}

static long first_mismatch(const float *got, const float *want, long n) {
    for (long i = 0; i < n; i++)
        if (!kb_close(got[i], want[i], 1e-3, 1e-4)) return i;
    return -1;
}

static void check(int sections, long n, int mode) { /* mode 0: whole, 1: split in two, 2: in place */
    float c[5 * 16], s_got[32], s_want[32];
    float *x = kb_alloc((size_t)n * sizeof(float)), *y = kb_alloc((size_t)n * sizeof(float));
    float *want = kb_alloc((size_t)n * sizeof(float));
    random_sections(c, sections);
    for (int i = 0; i < 2 * sections; i++) s_got[i] = s_want[i] = (float)(0.1 * (2 * kb_unit() - 1));
    for (long i = 0; i < n; i++) x[i] = (float)(2 * kb_unit() - 1), y[i] = NAN;
    expected(c, sections, s_want, x, want, n);
    long half = n / 2;
    if (mode == 0) biquad_cascade(c, sections, s_got, x, y, n);
    if (mode == 1) {
        biquad_cascade(c, sections, s_got, x, y, half);
        biquad_cascade(c, sections, s_got, x + half, y + half, n - half);
    }
    if (mode == 2) {
        for (long i = 0; i < n; i++) y[i] = x[i];
        biquad_cascade(c, sections, s_got, y, y, n);
    }
    long bad = first_mismatch(y, want, n);
    long bad_state = first_mismatch(s_got, s_want, 2 * sections);
    char what[200];
    snprintf(what, sizeof what, "biquad sections=%d n=%ld mode=%s: %s %ld", sections, n,
             mode == 0 ? "whole" : mode == 1 ? "split" : "in-place",
             bad >= 0 ? "wrong output at sample" : "wrong final state at index", bad >= 0 ? bad : bad_state);
    kb_check(bad < 0 && bad_state < 0, what);
    free(x), free(y), free(want);
}

int main(void) {
    kb_seed();
    for (int mode = 0; mode < 3; mode++) {
        check(1, 1, mode);
        check(1, 100, mode);
        check(4, 1001, mode);
        check((int)kb_range(1, 16), kb_range(2, 50000), mode);
    }
    check(0, 10, 0);
    return kb_finish();
}
