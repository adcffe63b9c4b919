// Warp and block prefix sums for the CUDA kernels (e.g. compacting the rows that pass a test into a
// dense, order-preserving list). Block scans need blockDim.x to be a multiple of 32 and at most
// 1024, and every thread of the block to call them (they synchronise).
#pragma once

#include <cuda_runtime.h>

#include "reduce.cuh"

namespace rlhf::cuda {

// Σ v over lanes 0..lane of the warp (inclusive).
template <typename V>
__device__ __forceinline__ V warpInclusiveSum(V v) {
  const unsigned lane = threadIdx.x & 31u;
  for (unsigned offset = 1; offset < 32; offset <<= 1) {
    const V other = __shfl_up_sync(kFullMask, v, offset);
    if (lane >= offset) v += other;
  }
  return v;
}

template <typename V>
struct BlockScan {
  V before;  // Σ v over the threads of lower index (exclusive prefix sum)
  V total;   // Σ v over the block (the same in every thread)
};

// The exclusive prefix sum of v in thread order, and the block total. `scratch` holds one V per warp
// (32 entries suffice); it may be reused after the call returns.
template <typename V>
__device__ BlockScan<V> blockExclusiveSum(V v, V* scratch) {
  const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
  const unsigned warps = blockDim.x >> 5;
  const V inclusive = warpInclusiveSum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 31) scratch[warp] = inclusive;
  __syncthreads();
  // Every warp scans the warp totals itself (no third barrier).
  const V warpTotal = lane < warps ? scratch[lane] : V(0);
  const V warpsInclusive = warpInclusiveSum(warpTotal);
  const V warpsBefore = __shfl_sync(kFullMask, warpsInclusive - warpTotal, warp);
  const V total = __shfl_sync(kFullMask, warpsInclusive, warps - 1);
  return {warpsBefore + inclusive - v, total};
}

}  // namespace rlhf::cuda
