// Vectorised global memory access: N consecutive elements moved as one aligned access of up to 16
// bytes (float4-, float2- or bf16x8-wide loads and stores). Kernels pick N on the host: the widest
// pack whose size divides the row length and to which every pointer involved is aligned, else 1.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>

namespace rlhf::cuda {

template <typename D, int N>
struct alignas(sizeof(D) * N) Pack {
  D v[N];
};

// Elements of D in one 16-byte access.
template <typename D>
constexpr int kPack16 = static_cast<int>(16 / sizeof(D));

template <int N, typename D>
__device__ __forceinline__ Pack<D, N> loadPack(const D* p) {
  return *reinterpret_cast<const Pack<D, N>*>(p);
}

template <int N, typename D>
__device__ __forceinline__ void storePack(D* p, const Pack<D, N>& pack) {
  *reinterpret_cast<Pack<D, N>*>(p) = pack;
}

// Host side: whether every pointer is a multiple of `bytes` (null pointers, never dereferenced,
// count as aligned).
inline bool allAligned(size_t bytes, std::initializer_list<const void*> pointers) {
  for (const void* p : pointers) {
    if (reinterpret_cast<uintptr_t>(p) % bytes != 0) return false;
  }
  return true;
}

}  // namespace rlhf::cuda
