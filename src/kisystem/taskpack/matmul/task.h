#ifndef MATMUL_TASK_H
#define MATMUL_TASK_H
/* c = a * b for n x n row-major float matrices; c never overlaps a or b. */
void matmul(int n, const float *a, const float *b, float *c);
#endif
