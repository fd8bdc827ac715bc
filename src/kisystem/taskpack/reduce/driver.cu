// The CUDA reduction task's driver: test cases and benchmark (protocol: see kbench.h).
// Without a CUDA device it prints KISYSTEM_SKIP: the task is then compiled only.
#include <cstring>
#include <vector>
#include "kbench.h"
#include "gpu.h"
#include "task.h"

static void test_case(int n) {
    std::vector<float> host(n > 0 ? n : 1);
    for (int i = 0; i < n; i++) host[i] = (float)(2 * kb_unit() - 0.5);
    float *d_x = nullptr;
    kb_cuda(cudaMalloc(&d_x, host.size() * sizeof(float)), "cudaMalloc");
    kb_cuda(cudaMemcpy(d_x, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
    float got = reduce_sum(d_x, n);
    kb_cuda(cudaDeviceSynchronize(), "reduce_sum");
    std::vector<float> after(host.size());
    kb_cuda(cudaMemcpy(after.data(), d_x, host.size() * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
    bool unchanged = n == 0 || std::memcmp(after.data(), host.data(), (size_t)n * sizeof(float)) == 0;
    kb_case("n=%d", n);
    kb_word(unchanged ? "d_x-unchanged" : "d_x-changed");
    kb_real(got);
    kb_end();
    cudaFree(d_x);
}

static void tests() {
    static const int lengths[] = {0, 1, 31, 32, 33, 1000, 65536, (1 << 20) + 3};
    for (int n : lengths) test_case(n);
    test_case((int)kb_range(1, 5000000));
}

// Ones at random places (one in eight), zeros elsewhere: every partial sum is an exact
// float, so any summation order gives the same result.
__global__ void kb_fill(float *x, long n, unsigned long long seed) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        unsigned long long h = (seed ^ (unsigned long long)i) * 0x9E3779B97F4A7C15ull;
        x[i] = ((h ^ (h >> 31)) >> 61) == 0 ? 1.0f : 0.0f;
    }
}

__global__ void kb_flip(float *x, long i) { x[i] = 1.0f - x[i]; }

// 64 Mi floats; one element flips between 0 and 1 before every call.
static void bench() {
    long n = kb_bench_size(1L << 26, 1, 1L << 26);
    float *d_x = nullptr;
    kb_cuda(cudaMalloc(&d_x, (size_t)n * sizeof(float)), "cudaMalloc");
    kb_fill<<<1024, 256>>>(d_x, n, kb_next());
    kb_cuda(cudaDeviceSynchronize(), "fill");
    for (long rep = 0, reps = kb_bench_reps(500); rep < reps; rep++) {
        kb_flip<<<1, 1>>>(d_x, kb_range(0, n - 1));
        float sum = reduce_sum(d_x, (int)n);
        kb_cuda(cudaDeviceSynchronize(), "reduce_sum");
        kb_digest(rep);
        kb_real(sum);
        kb_end();
    }
    cudaFree(d_x);
}

int main(int argc, char **argv) {
    int mode = kb_start(argc, argv);
    kb_need_gpu();
    if (mode == KB_TEST) tests();
    else bench();
    return kb_finish();
}
