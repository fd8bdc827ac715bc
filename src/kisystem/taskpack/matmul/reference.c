/* Reference: blocked i-k-j order, so the innermost loop streams rows of b and c,
 * four floats at a time (GCC vector extensions: SSE on any x86-64). */
#include <string.h>
#include "task.h"

#define REF_BLOCK 64

typedef float ref_v4 __attribute__((vector_size(16)));

static void ref_axpy_row(float *c, const float *b, float s, int n) {
    ref_v4 sv = {s, s, s, s};
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        ref_v4 b0, b1, c0, c1;
        memcpy(&b0, b + j, 16), memcpy(&b1, b + j + 4, 16);
        memcpy(&c0, c + j, 16), memcpy(&c1, c + j + 4, 16);
        c0 += sv * b0, c1 += sv * b1;
        memcpy(c + j, &c0, 16), memcpy(c + j + 4, &c1, 16);
    }
    for (; j < n; j++) c[j] += s * b[j];
}

void matmul(int n, const float *a, const float *b, float *c) {
    memset(c, 0, sizeof(float) * (size_t)n * (size_t)n);
    for (int ii = 0; ii < n; ii += REF_BLOCK) {
        int iend = ii + REF_BLOCK < n ? ii + REF_BLOCK : n;
        for (int kk = 0; kk < n; kk += REF_BLOCK) {
            int kend = kk + REF_BLOCK < n ? kk + REF_BLOCK : n;
            for (int i = ii; i < iend; i++)
                for (int k = kk; k < kend; k++)
                    ref_axpy_row(c + (size_t)i * n, b + (size_t)k * n, a[(size_t)i * n + k], n);
        }
    }
}
