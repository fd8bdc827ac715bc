#ifndef REDUCE_GPU_H
#define REDUCE_GPU_H
/* Driver helpers: skip where no CUDA device is usable, stop on CUDA errors. */
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

static inline void kb_need_gpu() {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        char reason[256];
        std::snprintf(reason, sizeof reason, "no CUDA device here (%s): compiled only; the tests and the "
                      "timing run where a GPU is present", err != cudaSuccess ? cudaGetErrorString(err) : "0 devices");
        kb_skip(reason);
    }
}

static inline void kb_cuda(cudaError_t err, const char *what) {
    if (err != cudaSuccess) {
        std::fprintf(stderr, "CUDA error in %s: %s\n", what, cudaGetErrorString(err));
        std::exit(1);
    }
}
#endif
