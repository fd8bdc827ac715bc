/* Correctness: random matrices of many shapes against a double-precision product. */
#include <math.h>
#include "kbench.h"
#include "task.h"

static void check_size(int n) {
    size_t cells = (size_t)n * n;
    float *a = kb_alloc(cells * sizeof(float)), *b = kb_alloc(cells * sizeof(float));
    float *c = kb_alloc(cells * sizeof(float));
    for (size_t i = 0; i < cells; i++) {
        a[i] = (float)(2 * kb_unit() - 1);
        b[i] = (float)(2 * kb_unit() - 1);
        c[i] = NAN; /* the result must overwrite every cell */
    }
    matmul(n, a, b, c);
    int bad = -1;
    double got = 0, want = 0;
    for (int i = 0; i < n && bad < 0; i++) {
        for (int j = 0; j < n; j++) {
            double sum = 0;
            for (int k = 0; k < n; k++) sum += (double)a[(size_t)i * n + k] * b[(size_t)k * n + j];
            if (!kb_close(c[(size_t)i * n + j], sum, 1e-4, 1e-6 * n * n + 1e-5)) {
                bad = i * n + j, got = c[(size_t)i * n + j], want = sum;
                break;
            }
        }
    }
    char what[160];
    snprintf(what, sizeof what, "matmul n=%d: c[%d][%d] = %g, expected %g", n, bad < 0 ? 0 : bad / n,
             bad < 0 ? 0 : bad % n, got, want);
    kb_check(bad < 0, what);
    free(a), free(b), free(c);
}

int main(void) {
    kb_seed();
    static const int sizes[] = {1, 2, 3, 7, 16, 31, 64, 65, 100};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) check_size(sizes[i]);
    check_size((int)kb_range(1, 130));
    return kb_finish();
}
