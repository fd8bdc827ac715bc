/* kisystem task pack: the driver side of the compare-judge protocol.
 *
 * Each task has one trusted driver (driver.c / .cpp / .cu) that is compiled once with
 * the candidate's solution (./prog) and once, by the judge, with a reference solution
 * the candidate never sees (./ref_prog).  The judge runs both on the same seed and
 * compares what they print; it times whole processes from outside.  Nothing a program
 * says about itself (pass counts, timings) is read.
 *
 *   prog test SEED   generates the test cases from SEED (edge cases plus fresh random
 *                    ones), calls the function and prints one line per case:
 *                        case <name> <tokens...>
 *                    (the function's output, or a digest of it for big outputs).
 *   prog bench SEED  generates the benchmark input from SEED, calls the function a
 *                    fixed number of times, changing the input a little between calls
 *                    (a cached earlier result is then wrong), and prints per call:
 *                        digest <rep> <tokens...>
 *   A reference that cannot run here (no GPU) prints "KISYSTEM_SKIP <reason>" and exits 0.
 *   KISYSTEM_BENCH_REPEATS (local runs, e.g. under a full profiler) lowers the calls per run.
 *
 * Tokens are numbers (compared within the task's rel_tol/abs_tol; NaN never matches)
 * or words (compared exactly).  A missing, repeated or differing case fails that case;
 * other lines are ignored.  The driver keeps a private copy of stdout for these lines
 * and points fd 1 at stderr first thing in main, so whatever the solution prints goes
 * to stderr.  Without arguments a driver runs "bench 1" (for local profiling);
 * KISYSTEM_BENCH_SIZE overrides the bench's main size there (the judge never sets it).
 */
#ifndef KISYSTEM_KBENCH_H
#define KISYSTEM_KBENCH_H

#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { KB_TEST, KB_BENCH };
enum { KB_FULL = 65536 }; /* arrays up to this many values are printed whole, longer ones digested */

static FILE *kb_out;
static uint64_t kb_rng = 0x9E3779B97F4A7C15ull;

static inline uint64_t kb_next(void) { /* xorshift64* */
    kb_rng ^= kb_rng >> 12;
    kb_rng ^= kb_rng << 25;
    kb_rng ^= kb_rng >> 27;
    return kb_rng * 0x2545F4914F6CDD1Dull;
}

static inline double kb_unit(void) { return (double)(kb_next() >> 11) * (1.0 / 9007199254740992.0); }

static inline long kb_range(long lo, long hi) { return lo + (long)(kb_next() % (uint64_t)(hi - lo + 1)); }

static inline void *kb_alloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
        exit(2);
    }
    return p;
}

/* Parses "test SEED" / "bench SEED", seeds the generator and moves stdout aside; the mode. */
static inline int kb_start(int argc, char **argv) {
    int fd = dup(1);
    if (fd < 0 || !(kb_out = fdopen(fd, "w"))) {
        perror("kbench: dup(stdout)");
        exit(2);
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    dup2(2, 1);
    if (argc == 1) {
        kb_rng = 1;
        return KB_BENCH;
    }
    if (argc != 3 || (strcmp(argv[1], "test") && strcmp(argv[1], "bench"))) {
        fprintf(stderr, "usage: %s test|bench SEED\n", argv[0]);
        exit(2);
    }
    uint64_t seed = strtoull(argv[2], NULL, 10);
    kb_rng = seed ^ 0x9E3779B97F4A7C15ull;
    if (!kb_rng) kb_rng = 1;
    return strcmp(argv[1], "test") ? KB_BENCH : KB_TEST;
}

/* The bench's main size: `fallback`, or KISYSTEM_BENCH_SIZE for local runs. */
static inline long kb_bench_size(long fallback, long lo, long hi) {
    const char *text = getenv("KISYSTEM_BENCH_SIZE");
    long value = text && *text ? strtol(text, NULL, 10) : fallback;
    return value < lo || value > hi ? fallback : value;
}

/* Calls per bench run: `fallback`, or KISYSTEM_BENCH_REPEATS for local runs (a full
 * profiler sets it to 1: it needs the work of one call, not of the timed run). */
static inline long kb_bench_reps(long fallback) {
    const char *text = getenv("KISYSTEM_BENCH_REPEATS");
    long value = text && *text ? strtol(text, NULL, 10) : fallback;
    return value < 1 || value > fallback ? fallback : value;
}

static inline void kb_skip(const char *reason) {
    fprintf(kb_out, "KISYSTEM_SKIP %s\n", reason);
    fflush(kb_out);
    exit(0);
}

/* Starts a "case <number>:<name>" line; the name is printf-formatted and must hold no
 * spaces.  The number keeps names unique where random sizes repeat a fixed one. */
static inline void kb_case(const char *fmt, ...) {
    static int number = 0;
    va_list args;
    va_start(args, fmt);
    fprintf(kb_out, "case %d:", ++number);
    vfprintf(kb_out, fmt, args);
    va_end(args);
}

static inline void kb_digest(long rep) { fprintf(kb_out, "digest %ld", rep); }
static inline void kb_int(long long v) { fprintf(kb_out, " %lld", v); }
static inline void kb_uint(unsigned long long v) { fprintf(kb_out, " %llu", v); }
static inline void kb_real(double v) { fprintf(kb_out, " %.9g", v); }
static inline void kb_word(const char *w) { fprintf(kb_out, " %s", w); }
static inline void kb_end(void) { fputc('\n', kb_out); }

static inline int kb_finish(void) { return fflush(kb_out) == 0 ? 0 : 2; }

/* An exact digest of integer output: a multiply-xorshift hash over 64-bit words. */
static inline uint64_t kb_mix(uint64_t hash, uint64_t word) {
    hash = (hash ^ word) * 0x9E3779B97F4A7C15ull;
    return hash ^ (hash >> 29);
}

static inline void kb_hash_word(uint64_t hash) { fprintf(kb_out, " h%016llx", (unsigned long long)hash); }

/* Integer arrays: whole when short, else length, sum, an exact hash and the ends. */
static inline void kb_u64s(const uint64_t *v, long n) {
    uint64_t hash = 0xcbf29ce484222325ull, sum = 0;
    if (n <= 256) {
        for (long i = 0; i < n; i++) kb_uint(v[i]);
        return;
    }
    for (long i = 0; i < n; i++) hash = kb_mix(hash, v[i]), sum += v[i];
    kb_word("n"), kb_int(n), kb_word("sum"), kb_uint(sum), kb_hash_word(hash), kb_word("first");
    for (long i = 0; i < 8; i++) kb_uint(v[i]);
    kb_word("last");
    for (long i = n - 8; i < n; i++) kb_uint(v[i]);
}

static inline void kb_u32s(const uint32_t *v, long n) {
    uint64_t *wide = (uint64_t *)kb_alloc((size_t)n * sizeof *wide);
    for (long i = 0; i < n; i++) wide[i] = v[i];
    kb_u64s(wide, n);
    free(wide);
}

/* A digest of float output that survives rounding: per block (64 of them) the sum of
 * |v| and of v, plus 64 values spread over the array. */
static inline void kb_float_digest(const float *v, long n) {
    long blocks = n < 64 ? n : 64;
    kb_word("n"), kb_int(n);
    for (long b = 0; b < blocks; b++) {
        double sum = 0, mag = 0;
        for (long i = n * b / blocks; i < n * (b + 1) / blocks; i++) sum += v[i], mag += v[i] < 0 ? -v[i] : v[i];
        kb_real(mag), kb_real(sum);
    }
    for (long s = 0; s < 64 && n > 0; s++) kb_real(v[(n - 1) * s / 63]);
}

/* Float arrays: whole when n <= KB_FULL, else digested. */
static inline void kb_floats(const float *v, long n) {
    if (n > KB_FULL) {
        kb_float_digest(v, n);
        return;
    }
    for (long i = 0; i < n; i++) kb_real(v[i]);
}

#endif
