// SwiGLU pieces: h = silu(gate) · up and its backward. Elementwise, threaded in large ranges.
#include <cmath>

#include "../kernels.h"
#include "parallel.h"

namespace rlhf::cpu {
namespace {
constexpr int64_t kGrain = 1 << 14;
}

void siluMul(const SiluMulArgs& p) {
  parallelFor(p.count, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float g = p.gate[i];
      const float sig = 1.0f / (1.0f + std::exp(-g));
      p.out[i] = g * sig * p.up[i];
    }
  });
}

void siluMulBackward(const SiluMulBackwardArgs& p) {
  // d silu(g)/dg = σ(g) · (1 + g · (1 − σ(g))).
  parallelFor(p.count, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float g = p.gate[i];
      const float sig = 1.0f / (1.0f + std::exp(-g));
      const float silu = g * sig;
      const float d = p.dOut[i];
      p.dUp[i] = d * silu;
      p.dGate[i] = d * p.up[i] * sig * (1.0f + g * (1.0f - sig));
    }
  });
}

}  // namespace rlhf::cpu
