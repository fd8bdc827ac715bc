// Correctness: random key sets with duplicates, absent queries and extreme keys.
#include <algorithm>
#include <vector>
#include "kbench.h"
#include "task.h"

static void check(std::size_t n, std::size_t distinct, std::size_t q) {
    std::vector<std::uint64_t> pool(distinct ? distinct : 1);
    for (auto &k : pool) k = kb_next();
    pool[0] = 0;
    if (pool.size() > 1) pool[1] = ~0ull;
    std::vector<std::uint64_t> keys(n), queries(q);
    for (auto &k : keys) k = pool[kb_range(0, (long)pool.size() - 1)];
    for (auto &k : queries) k = kb_unit() < 0.5 ? pool[kb_range(0, (long)pool.size() - 1)] : kb_next();
    std::vector<std::uint64_t> sorted(keys);
    std::sort(sorted.begin(), sorted.end());
    std::vector<std::uint32_t> counts(q + 1, 0xdeadbeefu);
    count_queries(keys.data(), n, queries.data(), q, counts.data());
    std::size_t bad = q;
    std::uint32_t want = 0;
    for (std::size_t i = 0; i < q && bad == q; i++) {
        auto range = std::equal_range(sorted.begin(), sorted.end(), queries[i]);
        want = static_cast<std::uint32_t>(range.second - range.first);
        if (counts[i] != want) bad = i;
    }
    char what[200];
    snprintf(what, sizeof what, "count_queries n=%zu distinct=%zu q=%zu: counts[%zu] = %u, expected %u", n, distinct,
             q, bad, bad < q ? counts[bad] : 0u, want);
    kb_check(bad == q && counts[q] == 0xdeadbeefu, what);
}

int main() {
    kb_seed();
    check(0, 0, 5);
    check(1, 1, 3);
    check(10, 2, 10);
    check(1000, 10, 500);
    check(5000, 5000, 5000);
    for (int i = 0; i < 4; i++) check(kb_range(1, 100000), kb_range(1, 20000), kb_range(0, 50000));
    return kb_finish();
}
