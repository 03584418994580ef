// common.cuh — helpers shared by every cuda/<family>.cu: the checked-call macros, launch
// geometry, deterministic block reductions, and the prototypes of every `<kernel>_cuda`.
//
// Every kernel of tensor/kernels.def gets a host entry `<name>_cuda` with exactly the CPU
// signature (the prototypes below are generated from the same X-macro list, so a mismatch is a
// compile error and a missing one is a link error). The entry reads any geometry struct on the
// host (the wrappers pass host pointers to stack structs), copies it by value into the launch,
// and launches on the legacy default stream (stream 0), so every kernel, cuBLAS call and
// cudaMemcpy is ordered one after another without explicit synchronisation.
//
// Reductions are deterministic: a block reduces in a fixed tree over shared memory, never with
// floating-point atomics, so the same inputs give bit-identical outputs run after run.
#pragma once

extern "C" {
#include "tensor/device.h"
#include "tensor/kernels_cpu.h"
}
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

extern "C" {
#define KERNEL(name, args) void name##_cuda args;
#include "tensor/kernels.def"
#undef KERNEL
}

// Every CUDA runtime call: abort with the statement text and CUDA's message (STYLE.md §5).
#define CUDA_CHECK(stmt)                                                                           \
    do {                                                                                           \
        cudaError_t err_ = (stmt);                                                                 \
        CHECK(err_ == cudaSuccess, "%s: %s", #stmt, cudaGetErrorString(err_));                     \
    } while (0)

// After every launch: a bad configuration shows up here, at the launch that caused it. With
// cuda_sync_each_launch() (DEBUG builds, or TRMML_CUDA_SYNC=1) the launch is also waited for, so
// an illegal address is reported against the kernel that made it instead of a later call.
extern "C" bool cuda_sync_each_launch(void);
#define CUDA_LAUNCH_CHECK(kname)                                                                   \
    do {                                                                                           \
        cudaError_t err_ = cudaGetLastError();                                                     \
        CHECK(err_ == cudaSuccess, "launch of %s: %s", kname, cudaGetErrorString(err_));           \
        if (cuda_sync_each_launch()) {                                                             \
            err_ = cudaDeviceSynchronize();                                                        \
            CHECK(err_ == cudaSuccess, "%s (synchronised after launch): %s", kname,                \
                  cudaGetErrorString(err_));                                                       \
        }                                                                                          \
    } while (0)

// Launch `kern<<<grid, block>>>(args...)` and check it. Nothing is launched for an empty grid.
#define LAUNCH(kern, grid, block, ...)                                                             \
    do {                                                                                           \
        if ((grid) > 0) {                                                                          \
            kern<<<(unsigned)(grid), (block)>>>(__VA_ARGS__);                                      \
            CUDA_LAUNCH_CHECK(#kern);                                                              \
        }                                                                                          \
    } while (0)

#define CUDA_THREADS 256        // threads per block of the element-wise (grid-stride) kernels
#define CUDA_REDUCE_THREADS 256 // threads per block of the block-per-row reductions
#define CUDA_MAX_BLOCKS 65536   // grid-stride kernels never launch more blocks than this

// Blocks for n independent items, one thread each, grid-stride beyond CUDA_MAX_BLOCKS blocks.
static inline int64_t cuda_blocks(int64_t n) {
    int64_t b = (n + CUDA_THREADS - 1) / CUDA_THREADS;
    return b > CUDA_MAX_BLOCKS ? CUDA_MAX_BLOCKS : b;
}

// Grid-stride loop over [0, n) with int64 indices (tensors may exceed 2^31 elements).
#define GRID_LOOP(i, n)                                                                            \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                      \
         i += (int64_t)gridDim.x * blockDim.x)

// Row-per-block loop: block b handles rows b, b + gridDim.x, ...
#define BLOCK_LOOP(r, rows) for (int64_t r = blockIdx.x; r < (rows); r += gridDim.x)

// Sum of v over the block (blockDim.x a power of two <= 1024), in a fixed tree: the result is
// returned to every thread. `sh` holds blockDim.x values. Ends with a barrier, so the caller
// may reuse `sh` immediately.
template <typename T> __device__ inline T block_sum(T v, T *sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    T r = sh[0];
    __syncthreads();
    return r;
}

// Maximum of v over the block (fmaxf semantics: a NaN loses to a number), returned to all.
__device__ inline float block_max(float v, float *sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] = fmaxf(sh[threadIdx.x], sh[threadIdx.x + s]);
        __syncthreads();
    }
    float r = sh[0];
    __syncthreads();
    return r;
}
