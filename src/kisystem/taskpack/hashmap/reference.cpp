// Reference: a small open-addressing hash map (linear probing, power-of-two slots).
#include <vector>
#include "task.h"

namespace {

struct RefSlot {
    std::uint64_t key;
    std::uint32_t count;  // 0 marks an empty slot
};

inline std::size_t ref_hash(std::uint64_t x) {  // splitmix64 finalizer
    x ^= x >> 30, x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27, x *= 0x94d049bb133111ebull;
    return static_cast<std::size_t>(x ^ (x >> 31));
}

}  // namespace

void count_queries(const std::uint64_t *keys, std::size_t n, const std::uint64_t *queries, std::size_t q,
                       std::uint32_t *counts) {
    std::size_t slots = 16;
    while (slots < 2 * n) slots *= 2;
    const std::size_t mask = slots - 1;
    std::vector<RefSlot> table(slots, RefSlot{0, 0});
    for (std::size_t i = 0; i < n; i++) {
        std::size_t at = ref_hash(keys[i]) & mask;
        while (table[at].count && table[at].key != keys[i]) at = (at + 1) & mask;
        table[at].key = keys[i];
        table[at].count++;
    }
    for (std::size_t i = 0; i < q; i++) {
        std::size_t at = ref_hash(queries[i]) & mask;
        while (table[at].count && table[at].key != queries[i]) at = (at + 1) & mask;
        counts[i] = table[at].count;
    }
}
