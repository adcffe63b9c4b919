// Element types of native tensors and the bfloat16 <-> float32 conversions.
// bfloat16 is a storage format here: CPU kernels compute in float32 (float64 where it matters).
#pragma once

#include <cstdint>
#include <cstring>

namespace rlhf {

enum class DType : uint8_t { Float32, BFloat16, Int32 };

// A bfloat16 value as the kernels' interface carries it (the bits only; the CUDA backend reads it
// as __nv_bfloat16, the CPU backend converts with bf16ToFloat / floatToBf16 below).
struct bf16 {
  uint16_t bits;
};

inline size_t dtypeSize(DType t) { return t == DType::BFloat16 ? 2 : 4; }

inline const char* dtypeName(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::BFloat16: return "bfloat16";
    case DType::Int32: return "int32";
  }
  return "unknown";
}

// float32 -> bfloat16 with round-to-nearest-even; NaN stays a (quiet) NaN, infinities stay infinite.
inline uint16_t floatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  const uint32_t roundingBias = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + roundingBias) >> 16);
}

inline float bf16ToFloat(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace rlhf
