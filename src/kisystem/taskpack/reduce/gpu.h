#ifndef REDUCE_GPU_H
#define REDUCE_GPU_H
/* Harness helpers: whether a CUDA device is usable here, and error checks. */
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

static inline bool kb_have_gpu() {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        std::printf("KISYSTEM_SKIP no CUDA device here (%s): compiled only; the tests and the profile "
                    "run where a GPU is present\n", err != cudaSuccess ? cudaGetErrorString(err) : "0 devices");
        return false;
    }
    return true;
}

static inline void kb_cuda(cudaError_t err, const char *what) {
    if (err != cudaSuccess) {
        std::printf("CUDA error in %s: %s\n", what, cudaGetErrorString(err));
        std::exit(1);
    }
}
#endif
