/* The matmul task's driver: test cases and benchmark (protocol: see kbench.h). */
#include <math.h>
#include "kbench.h"
#include "task.h"

static float *random_matrix(int n) {
    float *m = kb_alloc((size_t)n * n * sizeof(float));
    for (size_t i = 0; i < (size_t)n * n; i++) m[i] = (float)(2 * kb_unit() - 1);
    return m;
}

static void test_case(int n) {
    float *a = random_matrix(n), *b = random_matrix(n), *c = kb_alloc((size_t)n * n * sizeof(float));
    for (size_t i = 0; i < (size_t)n * n; i++) c[i] = NAN; /* every cell must be written */
    matmul(n, a, b, c);
    kb_case("n=%d", n);
    kb_floats(c, (long)n * n);
    kb_end();
    free(a), free(b), free(c);
}

static void tests(void) {
    static const int sizes[] = {1, 2, 3, 7, 16, 31, 64, 65, 100};
    for (int i = 0; i < 9; i++) test_case(sizes[i]);
    test_case((int)kb_range(1, 130));
}

/* 256 x 256 matrices; one cell of a changes between calls. */
static void bench(void) {
    int n = (int)kb_bench_size(256, 1, 4096);
    float *a = random_matrix(n), *b = random_matrix(n), *c = kb_alloc((size_t)n * n * sizeof(float));
    for (long rep = 0, reps = kb_bench_reps(40); rep < reps; rep++) {
        a[kb_range(0, (long)n * n - 1)] = (float)(2 * kb_unit() - 1);
        matmul(n, a, b, c);
        kb_digest(rep);
        kb_float_digest(c, (long)n * n);
        kb_end();
    }
    free(a), free(b), free(c);
}

int main(int argc, char **argv) {
    if (kb_start(argc, argv) == KB_TEST) tests();
    else bench();
    return kb_finish();
}
