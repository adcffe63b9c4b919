// Warp and block reductions for the CUDA kernels (float32 and float64 sums, float32 max, online
// softmax statistics, float64 NaN-ignoring min/max, several float64 sums at once).
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

// The softmax normaliser of a set of values, built in one pass: their max and Σ e^(x − max) (an
// empty set, or one of only −inf values: max = −inf, sum = 0). Statistics of disjoint sets merge
// exactly (up to rounding), so each thread can stream over its share of a row and the block merge
// the threads' statistics: logsumexp = max + log(sum). An aggregate (no constructor), so that
// arrays of it may live in __shared__ memory.
struct SoftmaxStats {
  float max;
  float sum;

  __device__ __forceinline__ static SoftmaxStats empty() { return {-__int_as_float(0x7f800000), 0.0f}; }

  // Adds one value. The max rarely changes after the first few values, so the rescale is rare.
  __device__ __forceinline__ void push(float x) {
    if (x > max) {
      sum = sum * expf(max - x) + 1.0f;  // e^(−inf) = 0 for the first value
      max = x;
    } else if (max != -__int_as_float(0x7f800000)) {  // (−inf) − (−inf) would be NaN
      sum += expf(x - max);
    }
  }
};

__device__ __forceinline__ SoftmaxStats mergeSoftmaxStats(SoftmaxStats a, SoftmaxStats b) {
  const float max = fmaxf(a.max, b.max);
  if (max == -__int_as_float(0x7f800000)) return SoftmaxStats::empty();
  return {max, a.sum * expf(a.max - max) + b.sum * expf(b.max - max)};
}

__device__ __forceinline__ SoftmaxStats warpSoftmaxStats(SoftmaxStats v) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    const SoftmaxStats other{__shfl_xor_sync(kFullMask, v.max, offset), __shfl_xor_sync(kFullMask, v.sum, offset)};
    v = mergeSoftmaxStats(v, other);
  }
  return v;
}

// The statistics of the whole block's values; `scratch` as for blockSum.
__device__ inline SoftmaxStats blockSoftmaxStats(SoftmaxStats v, SoftmaxStats* scratch) {
  const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
  const unsigned warps = (blockDim.x + 31u) >> 5;
  v = warpSoftmaxStats(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : SoftmaxStats::empty();
  return warpSoftmaxStats(v);
}

// fmin / fmax over the warp: NaN lanes are ignored, so the result is NaN only when every lane holds
// NaN (numpy's nanmin / nanmax). Exact, so the order does not matter.
__device__ __forceinline__ double warpMinIgnoringNan(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmin(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}
__device__ __forceinline__ double warpMaxIgnoringNan(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmax(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Σ over the block of each thread's K values v[0..K), in place, with one pair of barriers for all K.
// The order is fixed (each warp's shuffle tree, then warp 0's tree over the warp sums), so the sums
// are deterministic for a given blockDim. The sums are valid in warp 0 (thread 0 writes them out);
// the other threads' v is left partially reduced.
template <int K>
__device__ void blockSums(double (&v)[K]) {
  __shared__ double scratch[K][32];
  const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
  const unsigned warps = (blockDim.x + 31u) >> 5;
#pragma unroll
  for (int k = 0; k < K; ++k) v[k] = warpSum(v[k]);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) scratch[k][warp] = v[k];
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) v[k] = warpSum(lane < warps ? scratch[k][lane] : 0.0);
  }
}

}  // namespace rlhf::cuda
