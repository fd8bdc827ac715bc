#ifndef HASHMAP_TASK_H
#define HASHMAP_TASK_H
#include <cstddef>
#include <cstdint>
/* counts[i] = how many of keys[0..n) equal queries[i], for every i < q.  Keys are any
 * 64-bit values (0 and ~0 included); counts never overlaps keys or queries. */
void count_queries(const std::uint64_t *keys, std::size_t n, const std::uint64_t *queries, std::size_t q,
                   std::uint32_t *counts);
#endif
