// The hash-map task's driver: test cases and benchmark (protocol: see kbench.h).
#include <vector>
#include "kbench.h"
#include "task.h"

// Keys drawn from `distinct` values (0 and ~0 among them); half the queries are absent keys.
static void random_keys(std::vector<std::uint64_t> &keys, std::vector<std::uint64_t> &queries, std::size_t distinct) {
    std::vector<std::uint64_t> pool(distinct ? distinct : 1);
    for (auto &k : pool) k = kb_next();
    pool[0] = 0;
    if (pool.size() > 1) pool[1] = ~0ull;
    for (auto &k : keys) k = pool[kb_range(0, (long)pool.size() - 1)];
    for (auto &k : queries) k = kb_unit() < 0.5 ? pool[kb_range(0, (long)pool.size() - 1)] : kb_next();
}

static void test_case(std::size_t n, std::size_t distinct, std::size_t q) {
    std::vector<std::uint64_t> keys(n), queries(q);
    random_keys(keys, queries, distinct);
    std::vector<std::uint32_t> counts(q + 1, 0xdeadbeefu);
    count_queries(keys.data(), n, queries.data(), q, counts.data());
    kb_case("n=%zu/distinct=%zu/q=%zu", n, distinct, q);
    kb_word(counts[q] == 0xdeadbeefu ? "end-intact" : "wrote-past-the-end");
    kb_u32s(counts.data(), (long)q);
    kb_end();
}

static void tests() {
    test_case(0, 0, 5);
    test_case(1, 1, 3);
    test_case(10, 2, 10);
    test_case(1000, 10, 500);
    test_case(5000, 5000, 5000);
    for (int i = 0; i < 4; i++) test_case(kb_range(1, 100000), kb_range(1, 20000), kb_range(0, 50000));
}

// 200,000 keys and 200,000 queries; one key changes to a queried value between calls.
static void bench() {
    std::size_t n = static_cast<std::size_t>(kb_bench_size(200000, 1, 1L << 28));
    std::vector<std::uint64_t> keys(n), queries(n);
    std::vector<std::uint32_t> counts(n);
    random_keys(keys, queries, n / 8 + 1);
    for (long rep = 0, reps = kb_bench_reps(20); rep < reps; rep++) {
        keys[kb_range(0, (long)n - 1)] = queries[kb_range(0, (long)n - 1)];
        count_queries(keys.data(), n, queries.data(), n, counts.data());
        kb_digest(rep);
        kb_u32s(counts.data(), (long)n);
        kb_end();
    }
}

int main(int argc, char **argv) {
    if (kb_start(argc, argv) == KB_TEST) tests();
    else bench();
    return kb_finish();
}
