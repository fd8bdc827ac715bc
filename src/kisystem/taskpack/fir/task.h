#ifndef FIR_TASK_H
#define FIR_TASK_H
/* y[i] = sum over k < taps with k <= i of h[k] * x[i - k], for i < n (the signal is zero
 * before x[0]).  y never overlaps x or h. */
void fir_filter(const float *x, long n, const float *h, int taps, float *y);
#endif
