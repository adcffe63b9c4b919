// KTO (TRL 1.x `KTOTrainer._compute_loss`, trl-losses.md §3.3–3.4), in float64. Rows are unpaired;
// r = S − S_ref. With z0 the (clamped, detached) KL anchor:
//   kto:               desirable λ_D(1 − σ(β(r − z0))),  undesirable λ_U(1 − σ(β(z0 − r)))
//   apo_zero_unpaired: desirable λ_D(1 − σ(β r)),         undesirable λ_U σ(β r)
// loss = mean over all rows (TRL concatenates both groups and takes the mean).
#include "../../kernels.h"
#include "loss_math.h"

namespace rlhf::cpu {

void ktoLoss(const KtoLossArgs& p) {
  using lossmath::sigmoid;
  const double beta = p.beta;
  const double z0 = p.lossType == KtoLossType::Kto ? static_cast<double>(p.klAnchor) : 0.0;
  const double invRows = 1.0 / static_cast<double>(p.rows);
  double loss = 0.0;
  KtoMetrics m{};
  for (int64_t i = 0; i < p.rows; ++i) {
    const double logp = p.policyLogps[i];
    const double r = logp - p.refLogps[i];
    // Every form is λ·σ(±β(r − z0)) or λ·(1 − σ(β(r − z0))); with q = σ(β(r − z0)):
    // 1 − q has slope −β q(1 − q); σ(β r) in apo_zero_unpaired's undesirable branch has +β q(1 − q).
    const double q = sigmoid(beta * (r - z0));
    const double slope = beta * q * (1.0 - q);
    double rowLoss, dRow;
    if (p.desirable[i]) {
      rowLoss = p.desirableWeight * (1.0 - q);
      dRow = -p.desirableWeight * slope;
      m.rewardsChosenSum += beta * r;
      m.logpsChosenSum += logp;
      ++m.chosenCount;
    } else {
      // kto: 1 − σ(β(z0 − r)) = σ(β(r − z0)) = q; apo_zero_unpaired: σ(β r) = q (z0 = 0).
      rowLoss = p.undesirableWeight * q;
      dRow = p.undesirableWeight * slope;
      m.rewardsRejectedSum += beta * r;
      m.logpsRejectedSum += logp;
      ++m.rejectedCount;
    }
    loss += rowLoss;
    p.dPolicy[i] = static_cast<float>(dRow * invRows);
  }
  *p.loss = loss * invRows;
  if (p.metrics) *p.metrics = m;
}

}  // namespace rlhf::cpu
