// Times reduce_sum against the reference on the same device array (see kbench.h).
#include <vector>
#include "kbench.h"
#include "gpu.h"
#include "task.h"

static int n;
static float *d_x;
static volatile float sink;

extern "C" __attribute__((noinline)) void kisystem_bench_candidate() {
    sink = reduce_sum(d_x, n);
    cudaDeviceSynchronize();
}
extern "C" __attribute__((noinline)) void kisystem_bench_reference() {
    sink = ref_reduce_sum(d_x, n);
    cudaDeviceSynchronize();
}

int main() {
    if (!kb_have_gpu()) return 0;
    kb_seed();
    n = (int)kb_env_long("KISYSTEM_BENCH_SIZE", 1L << 24, 1, 1L << 30);
    std::vector<float> host(n);
    for (auto &v : host) v = (float)kb_unit();
    kb_cuda(cudaMalloc(&d_x, (size_t)n * sizeof(float)), "cudaMalloc");
    kb_cuda(cudaMemcpy(d_x, host.data(), (size_t)n * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
    kb_bench(kisystem_bench_candidate, kisystem_bench_reference);
    cudaFree(d_x);
    return 0;
}
