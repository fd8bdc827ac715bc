// Correctness: random arrays of many lengths against a double-precision host sum.
// Without a CUDA device it says so and passes: the task is then compiled only.
#include <cfloat>
#include <cmath>
#include <vector>
#include "kbench.h"
#include "gpu.h"
#include "task.h"

static void check(int n) {
    std::vector<float> host(n > 0 ? n : 1);
    double want = 0, magnitude = 0;
    for (int i = 0; i < n; i++) {
        host[i] = (float)(2 * kb_unit() - 0.5);
        want += host[i], magnitude += host[i] < 0 ? -host[i] : host[i];
    }
    float *d_x = nullptr;
    kb_cuda(cudaMalloc(&d_x, host.size() * sizeof(float)), "cudaMalloc");
    kb_cuda(cudaMemcpy(d_x, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
    float got = reduce_sum(d_x, n);
    kb_cuda(cudaDeviceSynchronize(), "reduce_sum");
    std::vector<float> after(host.size());
    kb_cuda(cudaMemcpy(after.data(), d_x, host.size() * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
    bool unchanged = n == 0 || memcmp(after.data(), host.data(), (size_t)n * sizeof(float)) == 0;
    char what[160];
    snprintf(what, sizeof what, "reduce_sum n=%d: got %.7g, expected %.7g%s", n, got, want,
             unchanged ? "" : " (and d_x was changed)");
    // A sequential float sum drifts like a random walk: allow 4 sigma of it, and no more.
    double tolerance = 4 * FLT_EPSILON * std::sqrt((double)n) * magnitude + 1e-6;
    kb_check(unchanged && kb_close(got, want, 0, tolerance), what);
    cudaFree(d_x);
}

int main() {
    if (!kb_have_gpu()) return 0;
    kb_seed();
    static const int lengths[] = {0, 1, 31, 32, 33, 1000, 65536, (1 << 20) + 3};
    for (int n : lengths) check(n);
    check((int)kb_range(1, 5000000));
    return kb_finish();
}
