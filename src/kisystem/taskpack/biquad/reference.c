/* Reference: sample-major, so the sections of consecutive samples overlap in the CPU's
 * pipeline; coefficients and state are copied to locals that nothing else can alias. */
#include "task.h"

#define REF_MAX_SECTIONS 16

static void ref_run(const float *c, int sections, float *z, const float *x, float *y, long n) {
    for (long i = 0; i < n; i++) {
        float v = x[i];
        for (int s = 0; s < sections; s++) {
            const float out = c[5 * s] * v + z[2 * s];
            z[2 * s] = c[5 * s + 1] * v - c[5 * s + 3] * out + z[2 * s + 1];
            z[2 * s + 1] = c[5 * s + 2] * v - c[5 * s + 4] * out;
            v = out;
        }
        y[i] = v;
    }
}

void biquad_cascade(const float *coeffs, int sections, float *state, const float *x, float *y, long n) {
    int first = 0;
    do { /* at most REF_MAX_SECTIONS at a time; zero sections copy x to y */
        int count = sections - first < REF_MAX_SECTIONS ? sections - first : REF_MAX_SECTIONS;
        float c[5 * REF_MAX_SECTIONS], z[2 * REF_MAX_SECTIONS];
        for (int i = 0; i < 5 * count; i++) c[i] = coeffs[5 * first + i];
        for (int i = 0; i < 2 * count; i++) z[i] = state[2 * first + i];
        ref_run(c, count, z, first ? y : x, y, n);
        for (int i = 0; i < 2 * count; i++) state[2 * first + i] = z[i];
        first += count;
    } while (first < sections);
}
