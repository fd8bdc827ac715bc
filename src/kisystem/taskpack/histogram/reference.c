/* Reference: four sub-histograms, so runs of equal bytes do not serialize on one counter. */
#include <string.h>
#include "task.h"

void histogram(const unsigned char *data, long n, unsigned int bins[256]) {
    unsigned int sub[4][256];
    memset(sub, 0, sizeof sub);
    long i = 0;
    for (; i + 4 <= n; i += 4) {
        sub[0][data[i]]++;
        sub[1][data[i + 1]]++;
        sub[2][data[i + 2]]++;
        sub[3][data[i + 3]]++;
    }
    for (; i < n; i++) sub[0][data[i]]++;
    for (int v = 0; v < 256; v++) bins[v] = sub[0][v] + sub[1][v] + sub[2][v] + sub[3][v];
}
