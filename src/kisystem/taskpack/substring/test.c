/* Correctness: random texts over small and large alphabets, planted and overlapping matches. */
#include "kbench.h"
#include "task.h"

static long naive_count(const char *t, long n, const char *p, long m) {
    long count = 0;
    for (long i = 0; i + m <= n; i++) {
        long j = 0;
        while (j < m && t[i + j] == p[j]) j++;
        count += j == m;
    }
    return count;
}

static void fill(char *s, long len, int alphabet) {
    for (long i = 0; i < len; i++) s[i] = (char)('a' + kb_range(0, alphabet - 1));
}

static void check(const char *label, const char *t, long n, const char *p, long m) {
    long want = naive_count(t, n, p, m), got = count_occurrences(t, n, p, m);
    char what[160];
    snprintf(what, sizeof what, "%s: n=%ld m=%ld: got %ld, expected %ld", label, n, m, got, want);
    kb_check(got == want, what);
}

static void random_case(int alphabet, long n, long m, int planted) {
    char *t = kb_alloc((size_t)n + 1), *p = kb_alloc((size_t)m + 1);
    fill(t, n, alphabet), fill(p, m, alphabet);
    for (int i = 0; i < planted && m <= n; i++) memcpy(t + kb_range(0, n - m), p, (size_t)m);
    char label[64];
    snprintf(label, sizeof label, "alphabet %d, %d planted", alphabet, planted);
    check(label, t, n, p, m);
    free(t), free(p);
}

int main(void) {
    kb_seed();
    check("all equal, overlapping", "aaaaaaaaaa", 10, "aa", 2);
    check("pattern longer than text", "abc", 3, "abcd", 4);
    check("pattern equals text", "abcd", 4, "abcd", 4);
    check("empty text", "", 0, "a", 1);
    check("single byte pattern", "abcabcab", 8, "b", 1);
    check("high bytes", "\xff\x80\xff\x80\xff", 5, "\xff\x80\xff", 3);
    static const int alphabets[] = {2, 4, 26};
    for (int a = 0; a < 3; a++)
        for (int k = 0; k < 4; k++)
            random_case(alphabets[a], kb_range(0, 5000), kb_range(1, 12), (int)kb_range(0, 20));
    random_case(26, 200000, 24, 50);
    return kb_finish();
}
