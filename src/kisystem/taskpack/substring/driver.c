/* The substring task's driver: test cases and benchmark (protocol: see kbench.h). */
#include "kbench.h"
#include "task.h"

static void fill(char *s, long len, int alphabet) {
    for (long i = 0; i < len; i++) s[i] = (char)('a' + kb_range(0, alphabet - 1));
}

static void test_case(const char *label, const char *t, long n, const char *p, long m) {
    kb_case("%s/n=%ld/m=%ld", label, n, m);
    kb_int(count_occurrences(t, n, p, m));
    kb_end();
}

static void random_case(int alphabet, long n, long m, int planted) {
    char *t = kb_alloc((size_t)n + 1), *p = kb_alloc((size_t)m + 1);
    fill(t, n, alphabet), fill(p, m, alphabet);
    for (int i = 0; i < planted && m <= n; i++) memcpy(t + kb_range(0, n - m), p, (size_t)m);
    char label[64];
    snprintf(label, sizeof label, "alphabet-%d/%d-planted", alphabet, planted);
    test_case(label, t, n, p, m);
    free(t), free(p);
}

static void tests(void) {
    test_case("all-equal-overlapping", "aaaaaaaaaa", 10, "aa", 2);
    test_case("pattern-longer-than-text", "abc", 3, "abcd", 4);
    test_case("pattern-equals-text", "abcd", 4, "abcd", 4);
    test_case("empty-text", "", 0, "a", 1);
    test_case("single-byte-pattern", "abcabcab", 8, "b", 1);
    test_case("high-bytes", "\xff\x80\xff\x80\xff", 5, "\xff\x80\xff", 3);
    test_case("zero-bytes", "a\0b\0a\0b", 7, "\0b", 2);
    static const int alphabets[] = {2, 4, 26};
    for (int a = 0; a < 3; a++)
        for (int k = 0; k < 4; k++)
            random_case(alphabets[a], kb_range(0, 5000), kb_range(1, 12), (int)kb_range(0, 20));
    random_case(26, 200000, 24, 50);
}

/* An 8 MiB text of random letters, a 24-byte pattern planted 200 times; one more
 * occurrence is planted before every call. */
static void bench(void) {
    enum { M = 24 };
    long n = kb_bench_size(8L << 20, M, 1L << 30);
    char *text = kb_alloc((size_t)n), pattern[M];
    for (long i = 0; i < n; i++) text[i] = (char)('a' + (kb_next() >> 33) % 26);
    fill(pattern, M, 26);
    for (int i = 0; i < 200; i++) memcpy(text + kb_range(0, n - M), pattern, M);
    for (long rep = 0, reps = kb_bench_reps(100); rep < reps; rep++) {
        memcpy(text + kb_range(0, n - M), pattern, M);
        kb_digest(rep);
        kb_int(count_occurrences(text, n, pattern, M));
        kb_end();
    }
    free(text);
}

int main(int argc, char **argv) {
    if (kb_start(argc, argv) == KB_TEST) tests();
    else bench();
    return kb_finish();
}
