#include "device.h"

#include "parallel.h"

namespace rlhf::cpu {

void convert(const void* src, DType from, void* dst, DType to, int64_t count) {
  if (from == to) {
    std::memcpy(dst, src, static_cast<size_t>(count) * dtypeSize(from));
    return;
  }
  parallelFor(count, 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float v = 0.0f;
      switch (from) {
        case DType::Float32: v = static_cast<const float*>(src)[i]; break;
        case DType::BFloat16: v = bf16ToFloat(static_cast<const uint16_t*>(src)[i]); break;
        case DType::Int32: v = static_cast<float>(static_cast<const int32_t*>(src)[i]); break;
      }
      if (to == DType::BFloat16) static_cast<uint16_t*>(dst)[i] = floatToBf16(v);
      else static_cast<float*>(dst)[i] = v;
    }
  });
}

}  // namespace rlhf::cpu
