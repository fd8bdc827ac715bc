#ifndef SUMSQ_TASK_H
#define SUMSQ_TASK_H
/* The sum of x[i]*x[i] over i < n, as a double. */
double sum_squares(const float *x, long n);
#endif
