/* kisystem task pack harness: fresh random inputs, test counting, the bench protocol.
 *
 * Tests print "KISYSTEM_TESTS passed=P total=T" and exit 0 only when all pass.
 * Benchmarks time the candidate and the reference in the same process, alternating
 * which goes first, and print one line per timed round:
 *     KISYSTEM_BENCH rep=R candidate_s=T reference_s=T
 * A harness that cannot run here prints "KISYSTEM_SKIP <reason>" and exits 0.
 *
 * Environment: KISYSTEM_SEED (repeat a run's inputs; default: a fresh seed every run),
 * KISYSTEM_BENCH_WARMUP (untimed rounds, default 1), KISYSTEM_BENCH_REPEATS (timed
 * rounds, default 5), KISYSTEM_BENCH_MIN_MS (go on timing rounds until this many
 * milliseconds passed, at most 1000 rounds; default 0), KISYSTEM_BENCH_SIZE (problem
 * size, default per task).
 */
#ifndef KISYSTEM_KBENCH_H
#define KISYSTEM_KBENCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t kb_rng = 0x9E3779B97F4A7C15ull;
static int kb_passed = 0, kb_total = 0;

static inline long kb_env_long(const char *name, long fallback, long lo, long hi) {
    const char *text = getenv(name);
    char *end;
    long value;
    if (!text || !*text) return fallback;
    value = strtol(text, &end, 10);
    if (*end || value < lo || value > hi) {
        fprintf(stderr, "ignoring %s=%s (allowed %ld..%ld)\n", name, text, lo, hi);
        return fallback;
    }
    return value;
}

static inline void kb_seed(void) {
    const char *text = getenv("KISYSTEM_SEED");
    uint64_t seed;
    if (text && *text) {
        seed = strtoull(text, NULL, 10);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 42);
    }
    kb_rng = seed ? seed : 1;
    printf("seed=%llu (KISYSTEM_SEED=%llu repeats these inputs)\n",
           (unsigned long long)seed, (unsigned long long)seed);
}

static inline uint64_t kb_next(void) { /* xorshift64* */
    kb_rng ^= kb_rng >> 12;
    kb_rng ^= kb_rng << 25;
    kb_rng ^= kb_rng >> 27;
    return kb_rng * 0x2545F4914F6CDD1Dull;
}

static inline double kb_unit(void) { return (double)(kb_next() >> 11) * (1.0 / 9007199254740992.0); }

static inline long kb_range(long lo, long hi) { return lo + (long)(kb_next() % (uint64_t)(hi - lo + 1)); }

static inline double kb_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void *kb_alloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
        exit(2);
    }
    return p;
}

static inline void kb_check(int ok, const char *what) {
    kb_total++;
    if (ok) kb_passed++;
    else printf("FAIL %s\n", what);
}

static inline int kb_finish(void) {
    printf("KISYSTEM_TESTS passed=%d total=%d\n", kb_passed, kb_total);
    return kb_passed == kb_total ? 0 : 1;
}

/* |got - want| <= abs_tol + rel_tol * |want|; NaN never passes. */
static inline int kb_close(double got, double want, double rel_tol, double abs_tol) {
    double diff = got > want ? got - want : want - got;
    double size = want < 0 ? -want : want;
    return diff <= abs_tol + rel_tol * size;
}

typedef void (*kb_fn)(void);

static inline void kb_bench(kb_fn candidate, kb_fn reference) {
    long warmup = kb_env_long("KISYSTEM_BENCH_WARMUP", 1, 0, 100);
    long repeats = kb_env_long("KISYSTEM_BENCH_REPEATS", 5, 1, 1000);
    double min_seconds = (double)kb_env_long("KISYSTEM_BENCH_MIN_MS", 0, 0, 3600000) * 1e-3;
    long i;
    for (i = 0; i < warmup; i++) {
        candidate();
        reference();
    }
    double begin = kb_now();
    for (i = 0; i < repeats || (i < 1000 && kb_now() - begin < min_seconds); i++) {
        double start, tc, tr;
        if (i % 2 == 0) {
            start = kb_now(); candidate(); tc = kb_now() - start;
            start = kb_now(); reference(); tr = kb_now() - start;
        } else {
            start = kb_now(); reference(); tr = kb_now() - start;
            start = kb_now(); candidate(); tc = kb_now() - start;
        }
        printf("KISYSTEM_BENCH rep=%ld candidate_s=%.9f reference_s=%.9f\n", i, tc, tr);
    }
}

#endif
