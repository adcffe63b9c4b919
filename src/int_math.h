// Integer helpers for tiling and blocking, shared by the CPU and CUDA kernels.
#pragma once

#include <cstdint>

#include "host_device.h"

namespace rlhf {

// ⌈a / b⌉ for a ≥ 0, b > 0.
RLHF_HOST_DEVICE constexpr int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The smallest multiple of `unit` that is ≥ a.
RLHF_HOST_DEVICE constexpr int64_t roundUp(int64_t a, int64_t unit) { return ceilDiv(a, unit) * unit; }

}  // namespace rlhf
