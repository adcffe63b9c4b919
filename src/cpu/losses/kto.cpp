// KTO (TRL 1.x `KTOTrainer._compute_loss`, trl-losses.md §3.3–3.4), in float64; the per-row math
// is in kto_terms.h (shared with the CUDA kernel). loss = mean over all rows (TRL concatenates both
// groups and takes the mean).
#include "../../kernels.h"
#include "kto_terms.h"

namespace rlhf::cpu {

void ktoLoss(const KtoLossArgs& p) {
  const lossmath::KtoSettings s = lossmath::ktoSettings(p);
  const double invRows = 1.0 / static_cast<double>(p.rows);
  double loss = 0.0;
  KtoMetrics m{};
  for (int64_t i = 0; i < p.rows; ++i) {
    const double logp = p.policyLogps[i];
    const double r = logp - p.refLogps[i];
    const lossmath::KtoRowTerm row = lossmath::ktoRowTerm(s, p.desirable[i] != 0, r);
    if (p.desirable[i]) {
      m.rewardsChosenSum += s.beta * r;
      m.logpsChosenSum += logp;
      ++m.chosenCount;
    } else {
      m.rewardsRejectedSum += s.beta * r;
      m.logpsRejectedSum += logp;
      ++m.rejectedCount;
    }
    loss += row.loss;
    p.dPolicy[i] = static_cast<float>(row.grad * invRows);
  }
  *p.loss = loss * invRows;
  if (p.metrics) *p.metrics = m;
}

}  // namespace rlhf::cpu
