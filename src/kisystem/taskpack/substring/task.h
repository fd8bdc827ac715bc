#ifndef SUBSTRING_TASK_H
#define SUBSTRING_TASK_H
/* Number of (possibly overlapping) occurrences of pattern[0..m) in text[0..n); m >= 1. */
long count_occurrences(const char *text, long n, const char *pattern, long m);
#endif
