// The 2D prefix-sum task's driver: test cases and benchmark (protocol: see kbench.h).
#include <vector>
#include "kbench.h"
#include "task.h"

static void test_case(std::size_t w, std::size_t h) {
    std::vector<std::uint32_t> in(w * h);
    for (auto &v : in) v = kb_unit() < 0.1 ? 0xffffffffu : static_cast<std::uint32_t>(kb_next());
    std::vector<std::uint64_t> out(w * h + 1, 0xdeadbeefull);
    prefix_sum_2d(in.data(), out.data(), w, h);
    kb_case("%zux%zu", w, h);
    kb_word(out[w * h] == 0xdeadbeefull ? "end-intact" : "wrote-past-the-end");
    kb_u64s(out.data(), (long)(w * h));
    kb_end();
}

static void tests() {
    static const std::size_t shapes[][2] = {{1, 1}, {1, 7}, {7, 1}, {2, 2}, {3, 5}, {64, 64}, {100, 3}, {5, 300}};
    for (const auto &s : shapes) test_case(s[0], s[1]);
    for (int i = 0; i < 4; i++) test_case(kb_range(1, 400), kb_range(1, 400));
}

// A 1024 x 1024 image; one pixel changes between calls.
static void bench() {
    std::size_t side = static_cast<std::size_t>(kb_bench_size(1024, 1, 1 << 15));
    std::vector<std::uint32_t> image(side * side);
    std::vector<std::uint64_t> table(side * side);
    for (auto &v : image) v = static_cast<std::uint32_t>(kb_next() >> 40);
    for (long rep = 0, reps = kb_bench_reps(40); rep < reps; rep++) {
        image[kb_range(0, (long)(side * side) - 1)] = static_cast<std::uint32_t>(kb_next() >> 40);
        prefix_sum_2d(image.data(), table.data(), side, side);
        kb_digest(rep);
        kb_u64s(table.data(), (long)(side * side));
        kb_end();
    }
}

int main(int argc, char **argv) {
    if (kb_start(argc, argv) == KB_TEST) tests();
    else bench();
    return kb_finish();
}
