// Deterministic contents for benchmark buffers (fresh pool memory holds garbage, NaNs included):
// pseudo-random floats from a hash of the index, and integer ids.
#pragma once

#include <cstdint>

#include "../../cuda/runtime.cuh"
#include "../../cuda/types.cuh"

namespace rlhf::bench {

namespace detail {

// A 32-bit mix of (i, seed) (the lowbias32 hash).
__device__ __forceinline__ uint32_t hashIndex(int64_t i, uint32_t seed) {
  uint32_t x = static_cast<uint32_t>(i) ^ (static_cast<uint32_t>(i >> 32) * 0x9e3779b9u) ^ seed;
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

template <typename D>
__global__ void fillUniformKernel(D* x, int64_t n, float scale, uint32_t seed) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) x[i] = cuda::fromFloat<D>(scale * (static_cast<float>(hashIndex(i, seed)) * 0x1p-31f - 1.0f));
}

// A template (like fillUniformKernel) so that every benchmark source may include this header.
template <typename I>
__global__ void fillIdsKernel(I* ids, int64_t n, I bound, uint32_t seed) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) ids[i] = static_cast<I>(hashIndex(i, seed) % static_cast<uint32_t>(bound));
}

}  // namespace detail

// x[i] uniform in [−scale, scale) (float or bf16 storage).
template <typename T>
void fillUniform(T* x, int64_t n, float scale, uint32_t seed) {
  if (n == 0) return;
  detail::fillUniformKernel<<<cuda::blocksFor(n, 256), 256, 0, cuda::stream()>>>(cuda::devicePtr(x), n, scale, seed);
  cuda::checkLaunch("fillUniformKernel");
}

// ids[i] uniform in [0, bound).
inline void fillIds(int32_t* ids, int64_t n, int32_t bound, uint32_t seed) {
  if (n == 0) return;
  detail::fillIdsKernel<<<cuda::blocksFor(n, 256), 256, 0, cuda::stream()>>>(ids, n, bound, seed);
  cuda::checkLaunch("fillIdsKernel");
}

}  // namespace rlhf::bench
