#ifndef HISTOGRAM_TASK_H
#define HISTOGRAM_TASK_H
/* bins[v] = how many of data[0..n) equal v; every bin is overwritten (zeroed first). */
void histogram(const unsigned char *data, long n, unsigned int bins[256]);
#endif
