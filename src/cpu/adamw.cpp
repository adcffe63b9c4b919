// AdamW with PyTorch's semantics (torch.optim.AdamW, single-tensor path): decoupled weight decay,
// bias-corrected moments; the per-element update in float32, operation by operation as PyTorch's
// float32 tensor ops do it.
#include <cmath>

#include "../kernels.h"
#include "parallel.h"

namespace rlhf::cpu {
namespace {
constexpr int64_t kGrainElements = 1 << 14;

// One tensor of the step; every scalar below depends on the step only.
void adamwTensor(const AdamWArgs& p, const AdamWTensor& tensor) {
  // Per-step scalars in float64 (PyTorch's Python floats), rounded to float32 where PyTorch's
  // float32 tensor ops would.
  const double t = static_cast<double>(p.step);
  const double biasCorrection1 = 1.0 - std::pow(p.beta1, t);
  const double biasCorrection2 = 1.0 - std::pow(p.beta2, t);
  const float decay = static_cast<float>(1.0 - p.lr * p.weightDecay);
  const float stepSize = static_cast<float>(p.lr / biasCorrection1);
  const float bc2Sqrt = static_cast<float>(std::sqrt(biasCorrection2));
  const float oneMinusBeta1 = static_cast<float>(1.0 - p.beta1);
  const float oneMinusBeta2 = static_cast<float>(1.0 - p.beta2);
  const float beta2 = static_cast<float>(p.beta2), eps = static_cast<float>(p.eps);
  const bool lerpFromStart = oneMinusBeta1 < 0.5f;  // torch.lerp's two formulas, chosen by weight
  const float beta1AsWeight = 1.0f - oneMinusBeta1;
  parallelFor(tensor.count, kGrainElements, [&](int64_t begin, int64_t end) {
    // The binding guarantees distinct storage, which lets the compiler vectorise.
    float* __restrict param = tensor.param;
    float* __restrict mom = tensor.m;
    float* __restrict vel = tensor.v;
    const float* __restrict grad = tensor.grad;
    for (int64_t i = begin; i < end; ++i) {
      const float g = grad[i];
      const float decayed = param[i] * decay;  // p ← p − lr·wd·p
      const float m = lerpFromStart ? mom[i] + oneMinusBeta1 * (g - mom[i])  // m ← lerp(m, g, 1 − β1)
                                    : g - (g - mom[i]) * beta1AsWeight;
      const float v = beta2 * vel[i] + oneMinusBeta2 * g * g;
      mom[i] = m;
      vel[i] = v;
      param[i] = decayed - stepSize * (m / (std::sqrt(v) / bc2Sqrt + eps));
    }
  });
}

}  // namespace

void adamw(const AdamWArgs& p) {
  for (int64_t i = 0; i < p.numTensors; ++i) adamwTensor(p, p.tensors[i]);
}

}  // namespace rlhf::cpu
