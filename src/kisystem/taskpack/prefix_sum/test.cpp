// Correctness: random images of many shapes against a direct rectangle sum.
#include <vector>
#include "kbench.h"
#include "task.h"

static void check(std::size_t w, std::size_t h) {
    std::vector<std::uint32_t> in(w * h);
    for (auto &v : in) v = kb_unit() < 0.1 ? 0xffffffffu : static_cast<std::uint32_t>(kb_next());
    std::vector<std::uint64_t> out(w * h + 1, 0xdeadbeefull), want(w * h);
    for (std::size_t y = 0; y < h; y++)
        for (std::size_t x = 0; x < w; x++) {
            std::uint64_t s = in[y * w + x];
            if (x) s += want[y * w + x - 1];
            if (y) s += want[(y - 1) * w + x];
            if (x && y) s -= want[(y - 1) * w + x - 1];
            want[y * w + x] = s;
        }
    prefix_sum_2d(in.data(), out.data(), w, h);
    std::size_t bad = w * h;
    for (std::size_t i = 0; i < w * h && bad == w * h; i++)
        if (out[i] != want[i]) bad = i;
    char what[160];
    if (bad < w * h)
        snprintf(what, sizeof what, "prefix_sum_2d %zux%zu: out[%zu][%zu] = %llu, expected %llu", w, h,
                      bad / w, bad % w, (unsigned long long)out[bad], (unsigned long long)want[bad]);
    else if (out[w * h] != 0xdeadbeefull)
        snprintf(what, sizeof what, "prefix_sum_2d %zux%zu: wrote past the end of out", w, h);
    else
        snprintf(what, sizeof what, "prefix_sum_2d %zux%zu", w, h);
    kb_check(bad == w * h && out[w * h] == 0xdeadbeefull, what);
}

int main() {
    kb_seed();
    static const std::size_t shapes[][2] = {{1, 1}, {1, 7}, {7, 1}, {2, 2}, {3, 5}, {64, 64}, {100, 3}, {5, 300}};
    for (const auto &s : shapes) check(s[0], s[1]);
    for (int i = 0; i < 4; i++) check(kb_range(1, 400), kb_range(1, 400));
    return kb_finish();
}
