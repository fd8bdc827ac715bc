/* Reference: Boyer-Moore-Horspool, shifting by the bad-character rule of the window's last byte. */
#include <string.h>
#include "task.h"

long count_occurrences(const char *text, long n, const char *pattern, long m) {
    if (m <= 0 || m > n) return 0;
    const unsigned char *t = (const unsigned char *)text, *p = (const unsigned char *)pattern;
    long shift[256];
    for (int c = 0; c < 256; c++) shift[c] = m;
    for (long i = 0; i + 1 < m; i++) shift[p[i]] = m - 1 - i;
    const unsigned char last = p[m - 1];
    long count = 0;
    for (long pos = 0; pos + m <= n;) {
        const unsigned char c = t[pos + m - 1];
        if (c == last && memcmp(t + pos, p, (size_t)(m - 1)) == 0) count++;
        pos += shift[c];
    }
    return count;
}
