#ifndef REDUCE_TASK_H
#define REDUCE_TASK_H
/* The sum of d_x[0..n), n >= 0, where d_x is device memory; returns it on the host.
 * Must not change d_x.  Float rounding may differ from a sequential sum. */
float reduce_sum(const float *d_x, int n);
#endif
