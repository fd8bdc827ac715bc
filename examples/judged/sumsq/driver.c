/* The trusted driver of the sum-of-squares example, compiled with the candidate's
 * solution (./prog) and, by the judge, with the hidden reference (./ref_prog).
 *
 *   prog test SEED    one line per case:        case <name> <value>
 *   prog bench SEED   one line per timed call:  digest <rep> <value>
 *
 * The judge compares these lines with the reference's (within rel_tol/abs_tol) and
 * times whole runs from outside; what the solution prints goes to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "task.h"

static FILE *out;
static unsigned long long state;

static float next_float(void) { /* xorshift64*, in [-1, 1) */
    state ^= state >> 12, state ^= state << 25, state ^= state >> 27;
    return (float)((state * 0x2545F4914F6CDD1Dull >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static float *random_floats(long n) {
    float *x = malloc((size_t)(n ? n : 1) * sizeof *x);
    for (long i = 0; i < n; i++) x[i] = next_float();
    return x;
}

static void tests(void) {
    static const long sizes[] = {0, 1, 2, 3, 7, 8, 9, 1000, 100003};
    for (int i = 0; i < 9; i++) {
        float *x = random_floats(sizes[i]);
        fprintf(out, "case n=%ld %.12g\n", sizes[i], sum_squares(x, sizes[i]));
        free(x);
    }
}

static void bench(void) {
    long n = 1L << 22;
    float *x = random_floats(n);
    for (int rep = 0; rep < 50; rep++) {
        x[rep] = next_float(); /* a changed input each call: a cached answer is wrong */
        fprintf(out, "digest %d %.12g\n", rep, sum_squares(x, n));
    }
    free(x);
}

int main(int argc, char **argv) {
    out = fdopen(dup(1), "w"); /* our lines; the solution's prints go to stderr */
    dup2(2, 1);
    if (argc != 3 || (strcmp(argv[1], "test") && strcmp(argv[1], "bench"))) {
        fprintf(stderr, "usage: %s test|bench SEED\n", argv[0]);
        return 2;
    }
    state = strtoull(argv[2], NULL, 10) | 1;
    if (strcmp(argv[1], "test") == 0) tests();
    else bench();
    return fflush(out) == 0 ? 0 : 2;
}
