/* Reference: the head (i < taps) apart, so the body's inner loop has no branch; four
 * outputs at a time share each loaded coefficient. */
#include "task.h"

static float ref_dot(const float *x, long i, const float *h, int k_end) {
    float sum = 0.0f;
    for (int k = 0; k < k_end; k++) sum += h[k] * x[i - k];
    return sum;
}

void fir_filter(const float *x, long n, const float *h, int taps, float *y) {
    long i = 0;
    for (; i < n && i < taps; i++) y[i] = ref_dot(x, i, h, (int)i + 1);
    for (; i + 4 <= n; i += 4) {
        float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
        for (int k = 0; k < taps; k++) {
            const float c = h[k];
            const float *xs = x + i - k;
            s0 += c * xs[0], s1 += c * xs[1], s2 += c * xs[2], s3 += c * xs[3];
        }
        y[i] = s0, y[i + 1] = s1, y[i + 2] = s2, y[i + 3] = s3;
    }
    for (; i < n; i++) y[i] = ref_dot(x, i, h, taps);
}
