/* Times count_occurrences against the reference on the same random text (see kbench.h). */
#include "kbench.h"
#include "task.h"

#define PATTERN_LEN 24

static long n;
static char *text, pattern[PATTERN_LEN];
static volatile long sink;

__attribute__((noinline)) void kisystem_bench_candidate(void) {
    sink = count_occurrences(text, n, pattern, PATTERN_LEN);
}
__attribute__((noinline)) void kisystem_bench_reference(void) {
    sink = ref_count_occurrences(text, n, pattern, PATTERN_LEN);
}

int main(void) {
    kb_seed();
    n = kb_env_long("KISYSTEM_BENCH_SIZE", 8L << 20, PATTERN_LEN, 1L << 30);
    text = kb_alloc((size_t)n);
    for (long i = 0; i < n; i++) text[i] = (char)('a' + kb_range(0, 25));
    for (int i = 0; i < PATTERN_LEN; i++) pattern[i] = (char)('a' + kb_range(0, 25));
    for (int i = 0; i < 200; i++) memcpy(text + kb_range(0, n - PATTERN_LEN), pattern, PATTERN_LEN);
    kb_bench(kisystem_bench_candidate, kisystem_bench_reference);
    free(text);
    return 0;
}
