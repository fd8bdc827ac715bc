/* The histogram task's driver: test cases and benchmark (protocol: see kbench.h). */
#include "kbench.h"
#include "task.h"

static const char *const KINDS[] = {"uniform", "skewed", "constant"};

static void fill(unsigned char *d, long n, int kind) {
    for (long i = 0; i < n; i++) {
        if (kind == 0) d[i] = (unsigned char)kb_next();
        else if (kind == 1) d[i] = (unsigned char)(kb_unit() < 0.7 ? 7 : kb_next());
        else d[i] = 255;
    }
}

static void test_case(long n, int kind) {
    unsigned char *d = kb_alloc((size_t)n);
    unsigned int bins[256];
    fill(d, n, kind);
    for (int v = 0; v < 256; v++) bins[v] = 0xdeadbeefu; /* every bin must be overwritten */
    histogram(d, n, bins);
    kb_case("n=%ld/%s", n, KINDS[kind]);
    kb_u32s(bins, 256);
    kb_end();
    free(d);
}

static void tests(void) {
    static const long lengths[] = {0, 1, 3, 4, 5, 255, 1000};
    for (int kind = 0; kind < 3; kind++) {
        for (int i = 0; i < 7; i++) test_case(lengths[i], kind);
        test_case(kb_range(1, 300000), kind);
    }
}

/* 8 MiB where 60 % of the bytes are 42; a few bytes change between calls. */
static void bench(void) {
    long n = kb_bench_size(8L << 20, 1, 1L << 30);
    unsigned char *data = kb_alloc((size_t)n);
    unsigned int bins[256];
    for (long i = 0; i < n; i++) {
        uint64_t r = kb_next();
        data[i] = (unsigned char)((r >> 32) % 10 < 6 ? 42 : r);
    }
    for (long rep = 0, reps = kb_bench_reps(40); rep < reps; rep++) {
        for (int k = 0; k < 16; k++) data[kb_range(0, n - 1)] = (unsigned char)kb_next();
        histogram(data, n, bins);
        kb_digest(rep);
        kb_u32s(bins, 256);
        kb_end();
    }
    free(data);
}

int main(int argc, char **argv) {
    if (kb_start(argc, argv) == KB_TEST) tests();
    else bench();
    return kb_finish();
}
