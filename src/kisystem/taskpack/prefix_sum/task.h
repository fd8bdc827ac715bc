#ifndef PREFIX_SUM_TASK_H
#define PREFIX_SUM_TASK_H
#include <cstddef>
#include <cstdint>
/* Inclusive 2D prefix sum (summed-area table) of a row-major w x h image:
 * out[y*w + x] = sum of in[j*w + i] for all j <= y, i <= x.  out never overlaps in. */
void prefix_sum_2d(const std::uint32_t *in, std::uint64_t *out, std::size_t w, std::size_t h);
#endif
