// Reference: one row-major pass; a running row sum plus the finished row above.
#include "task.h"

void prefix_sum_2d(const std::uint32_t *in, std::uint64_t *out, std::size_t w, std::size_t h) {
    for (std::size_t y = 0; y < h; y++) {
        const std::uint32_t *row = in + y * w;
        std::uint64_t *dst = out + y * w;
        const std::uint64_t *above = y ? dst - w : nullptr;
        std::uint64_t run = 0;
        if (above) {
            for (std::size_t x = 0; x < w; x++) {
                run += row[x];
                dst[x] = run + above[x];
            }
        } else {
            for (std::size_t x = 0; x < w; x++) dst[x] = run += row[x];
        }
    }
}
