// Reference: grid-stride loads, warp shuffles, one partial sum per block, then one block
// adds the partials.  Kernels are named ref_* so profiles can tell them apart.
#include <cuda_runtime.h>
#include "task.h"

#define REF_THREADS 256
#define REF_MAX_BLOCKS 1024

__device__ float ref_warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

__device__ float ref_block_sum(float v) {
    __shared__ float warps[REF_THREADS / 32];
    v = ref_warp_sum(v);
    if (threadIdx.x % 32 == 0) warps[threadIdx.x / 32] = v;
    __syncthreads();
    v = threadIdx.x < REF_THREADS / 32 ? warps[threadIdx.x] : 0.0f;
    return threadIdx.x < 32 ? ref_warp_sum(v) : 0.0f;
}

__global__ void ref_partial_sums(const float *x, int n, float *partial) {
    float v = 0.0f;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) v += x[i];
    v = ref_block_sum(v);
    if (threadIdx.x == 0) partial[blockIdx.x] = v;
}

__global__ void ref_final_sum(const float *partial, int count, float *out) {
    float v = 0.0f;
    for (int i = threadIdx.x; i < count; i += blockDim.x) v += partial[i];
    v = ref_block_sum(v);
    if (threadIdx.x == 0) *out = v;
}

float reduce_sum(const float *d_x, int n) {
    static float *scratch = nullptr;  // REF_MAX_BLOCKS partials, then the result
    if (!scratch && cudaMalloc(&scratch, (REF_MAX_BLOCKS + 1) * sizeof(float)) != cudaSuccess) return 0.0f;
    int blocks = (n + REF_THREADS - 1) / REF_THREADS;
    blocks = blocks < 1 ? 1 : blocks > REF_MAX_BLOCKS ? REF_MAX_BLOCKS : blocks;
    ref_partial_sums<<<blocks, REF_THREADS>>>(d_x, n, scratch);
    ref_final_sum<<<1, REF_THREADS>>>(scratch, blocks, scratch + REF_MAX_BLOCKS);
    float sum = 0.0f;
    cudaMemcpy(&sum, scratch + REF_MAX_BLOCKS, sizeof(float), cudaMemcpyDeviceToHost);
    return sum;
}
