// The CPU backend's "device" is host memory. The binding manages tensor storage through these
// functions on whichever backend it was built for; cuda/kernels_cuda.h declares the same names for
// GPU memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../dtype.h"
#include "../memory.h"

namespace rlhf::cpu {

// Device pointers are host pointers: no staging copy is ever needed to read them.
constexpr bool kHostMemory = true;
// The kernels compute on float32 tensors only (kernels.h: the XArgs instantiations).
constexpr bool kComputesBf16 = false;

inline void* deviceAlloc(size_t bytes) { return trackedAlloc(bytes); }
inline void deviceFree(void* ptr, size_t bytes) { trackedFree(ptr, bytes); }
inline void zeroDevice(void* ptr, size_t bytes) { std::memset(ptr, 0, bytes); }
inline void copyToDevice(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
inline void copyToHost(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
// Overlapping ranges are allowed (memmove semantics).
inline void copyOnDevice(void* dst, const void* src, size_t bytes) { std::memmove(dst, src, bytes); }
inline MemoryStats deviceMemoryStats() { return memoryStats(); }
inline void resetDevicePeakBytes() { resetPeakBytes(); }
inline void synchronize() {}

// dst[i] = src[i] converted (float32 <-> bfloat16 rounding to nearest even, int32 -> float);
// contiguous, `count` elements. float -> int32 is not a conversion the binding asks for.
void convert(const void* src, DType from, void* dst, DType to, int64_t count);

}  // namespace rlhf::cpu
