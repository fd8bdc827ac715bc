// Times prefix_sum_2d against the reference on the same random image (see kbench.h).
#include <vector>
#include "kbench.h"
#include "task.h"

static std::size_t side;
static std::vector<std::uint32_t> image;
static std::vector<std::uint64_t> table;

extern "C" __attribute__((noinline)) void kisystem_bench_candidate() {
    prefix_sum_2d(image.data(), table.data(), side, side);
}
extern "C" __attribute__((noinline)) void kisystem_bench_reference() {
    ref_prefix_sum_2d(image.data(), table.data(), side, side);
}

int main() {
    kb_seed();
    side = static_cast<std::size_t>(kb_env_long("KISYSTEM_BENCH_SIZE", 1024, 1, 1 << 15));
    image.resize(side * side);
    table.resize(side * side);
    for (auto &v : image) v = static_cast<std::uint32_t>(kb_next() >> 40);
    kb_bench(kisystem_bench_candidate, kisystem_bench_reference);
    return 0;
}
