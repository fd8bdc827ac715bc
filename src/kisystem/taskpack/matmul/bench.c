/* Times matmul against ref_matmul on the same random matrices (see kbench.h). */
#include "kbench.h"
#include "task.h"

static int n;
static float *a, *b, *c;

__attribute__((noinline)) void kisystem_bench_candidate(void) { matmul(n, a, b, c); }
__attribute__((noinline)) void kisystem_bench_reference(void) { ref_matmul(n, a, b, c); }

int main(void) {
    kb_seed();
    n = (int)kb_env_long("KISYSTEM_BENCH_SIZE", 256, 1, 4096);
    size_t cells = (size_t)n * n;
    a = kb_alloc(cells * sizeof(float)), b = kb_alloc(cells * sizeof(float)), c = kb_alloc(cells * sizeof(float));
    for (size_t i = 0; i < cells; i++) a[i] = (float)(2 * kb_unit() - 1), b[i] = (float)(2 * kb_unit() - 1);
    kb_bench(kisystem_bench_candidate, kisystem_bench_reference);
    free(a), free(b), free(c);
    return 0;
}
