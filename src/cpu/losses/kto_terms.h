// KTO's per-row math (TRL 1.x `KTOTrainer._compute_loss`, trl-losses.md §3.3–3.4), in float64,
// shared by the CPU kernel (src/cpu/losses/kto.cpp) and the CUDA kernel (cuda/losses/kto.cu).
// Rows are unpaired; r = S − S_ref. With z0 the (clamped, detached) KL anchor:
//   kto:               desirable λ_D(1 − σ(β(r − z0))),  undesirable λ_U(1 − σ(β(z0 − r)))
//   apo_zero_unpaired: desirable λ_D(1 − σ(β r)),         undesirable λ_U σ(β r)
#pragma once

#include "../../host_device.h"
#include "../../kernels.h"
#include "loss_math.h"

namespace rlhf::lossmath {

struct KtoSettings {
  double beta, z0, desirableWeight, undesirableWeight;
};
RLHF_HOST_DEVICE inline KtoSettings ktoSettings(const KtoLossArgs& p) {
  return {p.beta, p.lossType == KtoLossType::Kto ? static_cast<double>(p.klAnchor) : 0.0, p.desirableWeight,
          p.undesirableWeight};
}

// One row's loss and its derivative w.r.t. S (before the mean over rows).
struct KtoRowTerm {
  double loss, grad;
};
RLHF_HOST_DEVICE inline KtoRowTerm ktoRowTerm(const KtoSettings& s, bool desirable, double r) {
  // Every form is λ·σ(±β(r − z0)) or λ·(1 − σ(β(r − z0))); with q = σ(β(r − z0)):
  // 1 − q has slope −β q(1 − q); σ(β r) in apo_zero_unpaired's undesirable branch has +β q(1 − q).
  const double q = sigmoid(s.beta * (r - s.z0));
  const double slope = s.beta * q * (1.0 - q);
  if (desirable) return {s.desirableWeight * (1.0 - q), -s.desirableWeight * slope};
  // kto: 1 − σ(β(z0 − r)) = σ(β(r − z0)) = q; apo_zero_unpaired: σ(β r) = q (z0 = 0).
  return {s.undesirableWeight * q, s.undesirableWeight * slope};
}

}  // namespace rlhf::lossmath
