// Times count_queries against the reference on the same random keys (see kbench.h).
#include <vector>
#include "kbench.h"
#include "task.h"

static std::vector<std::uint64_t> keys, queries;
static std::vector<std::uint32_t> counts;

extern "C" __attribute__((noinline)) void kisystem_bench_candidate() {
    count_queries(keys.data(), keys.size(), queries.data(), queries.size(), counts.data());
}
extern "C" __attribute__((noinline)) void kisystem_bench_reference() {
    ref_count_queries(keys.data(), keys.size(), queries.data(), queries.size(), counts.data());
}

int main() {
    kb_seed();
    std::size_t n = static_cast<std::size_t>(kb_env_long("KISYSTEM_BENCH_SIZE", 200000, 1, 1L << 28));
    std::vector<std::uint64_t> pool(n / 8 + 1);
    for (auto &k : pool) k = kb_next();
    keys.resize(n), queries.resize(n), counts.resize(n);
    for (auto &k : keys) k = pool[kb_range(0, (long)pool.size() - 1)];
    for (auto &k : queries) k = kb_unit() < 0.5 ? pool[kb_range(0, (long)pool.size() - 1)] : kb_next();
    kb_bench(kisystem_bench_candidate, kisystem_bench_reference);
    return 0;
}
