/* Times histogram against the reference on the same skewed random bytes (see kbench.h). */
#include "kbench.h"
#include "task.h"

static long n;
static unsigned char *data;
static unsigned int bins[256];

__attribute__((noinline)) void kisystem_bench_candidate(void) { histogram(data, n, bins); }
__attribute__((noinline)) void kisystem_bench_reference(void) { ref_histogram(data, n, bins); }

int main(void) {
    kb_seed();
    n = kb_env_long("KISYSTEM_BENCH_SIZE", 8L << 20, 1, 1L << 30);
    data = kb_alloc((size_t)n);
    for (long i = 0; i < n; i++) data[i] = (unsigned char)(kb_unit() < 0.6 ? 42 : kb_range(0, 255));
    kb_bench(kisystem_bench_candidate, kisystem_bench_reference);
    free(data);
    return 0;
}
