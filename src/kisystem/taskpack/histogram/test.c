/* Correctness: uniform, skewed and constant random buffers of many lengths. */
#include "kbench.h"
#include "task.h"

static void fill(unsigned char *d, long n, int kind) {
    for (long i = 0; i < n; i++) {
        if (kind == 0) d[i] = (unsigned char)kb_range(0, 255);
        else if (kind == 1) d[i] = (unsigned char)(kb_unit() < 0.7 ? 7 : kb_range(0, 255));
        else d[i] = 255;
    }
}

static void check(long n, int kind) {
    unsigned char *d = kb_alloc((size_t)n);
    unsigned int bins[256], want[256] = {0};
    fill(d, n, kind);
    for (long i = 0; i < n; i++) want[d[i]]++;
    for (int v = 0; v < 256; v++) bins[v] = 0xdeadbeefu; /* must be overwritten */
    histogram(d, n, bins);
    int bad = -1;
    for (int v = 0; v < 256 && bad < 0; v++)
        if (bins[v] != want[v]) bad = v;
    char what[160];
    snprintf(what, sizeof what, "histogram n=%ld kind=%d: bins[%d] = %u, expected %u", n, kind,
             bad < 0 ? 0 : bad, bad < 0 ? 0 : bins[bad], bad < 0 ? 0 : want[bad]);
    kb_check(bad < 0, what);
    free(d);
}

int main(void) {
    kb_seed();
    static const long lengths[] = {0, 1, 3, 4, 5, 255, 1000};
    for (int kind = 0; kind < 3; kind++) {
        for (int i = 0; i < 7; i++) check(lengths[i], kind);
        check(kb_range(1, 300000), kind);
    }
    return kb_finish();
}
