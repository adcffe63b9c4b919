// The dropout mask of LoRA's adapter input: a pure function of (seed, element index), so the
// forward, the backward and every backend regenerate the same mask without storing it. Included
// by the CUDA backend as well (RLHF_HOST_DEVICE expands to __host__ __device__ under nvcc).
//
//   h    = mix64(mix64(seed) + (index + 1) · 0x9E3779B97F4A7C15)     (splitmix64's finaliser)
//   keep = (h >> 32) ≥ threshold,  threshold = floor(p · 2³²)
//
// so an element is dropped with probability p (to within 2⁻³²). The comparison is on integers,
// so the CPU and the GPU agree bit for bit. Callers must vary the seed between layers and steps:
// the same seed and index always give the same decision.
#pragma once

#include <cstdint>

#include "../host_device.h"

namespace rlhf {

RLHF_HOST_DEVICE inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The 32-bit threshold for drop probability p in [0, 1).
RLHF_HOST_DEVICE inline uint32_t dropoutThreshold(float p) {
  return static_cast<uint32_t>(static_cast<double>(p) * 4294967296.0);
}

// The per-seed constant of the hash; compute it once per call, not per element.
RLHF_HOST_DEVICE inline uint64_t dropoutSeedKey(uint64_t seed) { return mix64(seed); }

// True when element `index` survives dropout.
RLHF_HOST_DEVICE inline bool dropoutKeep(uint64_t seedKey, uint64_t index, uint32_t threshold) {
  const uint64_t h = mix64(seedKey + (index + 1) * 0x9E3779B97F4A7C15ull);
  return static_cast<uint32_t>(h >> 32) >= threshold;
}

}  // namespace rlhf
