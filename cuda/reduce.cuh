// Warp and block reductions for the CUDA kernels (float32 and float64 sums, float32 max).
// Block reductions need blockDim.x to be a multiple of 32 and at most 1024, and every thread of the
// block to call them (they synchronise); the result is returned to every thread.
#pragma once

#include <cuda_runtime.h>

namespace rlhf::cuda {

constexpr unsigned kFullMask = 0xffffffffu;

template <typename V>
__device__ __forceinline__ V warpSum(V v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

__device__ __forceinline__ float warpMax(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Σ v over the block. `scratch` holds one V per warp (32 entries suffice); it may be reused after
// the call returns.
template <typename V>
__device__ V blockSum(V v, V* scratch) {
  const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
  const unsigned warps = (blockDim.x + 31u) >> 5;
  v = warpSum(v);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : V(0);
  return warpSum(v);
}

// max v over the block (−inf for an all −inf block); `scratch` as for blockSum.
__device__ inline float blockMax(float v, float* scratch) {
  const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
  const unsigned warps = (blockDim.x + 31u) >> 5;
  v = warpMax(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : -__int_as_float(0x7f800000);
  return warpMax(v);
}

}  // namespace rlhf::cuda
