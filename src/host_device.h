// RLHF_HOST_DEVICE marks the small inline functions that the CPU kernels and the CUDA kernels share
// (one definition of a formula for both backends): __host__ __device__ under nvcc, nothing for a
// host compiler.
#pragma once

#if defined(__CUDACC__)
#define RLHF_HOST_DEVICE __host__ __device__
#else
#define RLHF_HOST_DEVICE
#endif
