// CPO, SimPO and AlphaPO (TRL 1.x `CPOTrainer.cpo_loss`, trl-losses.md §5), reference-free, in
// float64; the per-pair math is in cpo_terms.h (shared with the CUDA kernel).
#include "../../kernels.h"
#include "cpo_terms.h"
#include "loss_math.h"

namespace rlhf::cpu {

void cpoLoss(const CpoLossArgs& p) {
  const lossmath::CpoSettings s = lossmath::cpoSettings(p);
  const float* chosenLengths = s.averaged ? p.chosenLengths : nullptr;
  const float* rejectedLengths = s.averaged ? p.rejectedLengths : nullptr;
  const double invPairs = 1.0 / static_cast<double>(p.pairs);
  double sum = 0.0;
  lossmath::PairMetricsSum m;
  for (int64_t i = 0; i < p.pairs; ++i) {
    const lossmath::CpoPairTerm t =
        lossmath::cpoPairTerm(s, p.policyChosen[i], p.policyRejected[i], lossmath::clampedLength(chosenLengths, i),
                              lossmath::clampedLength(rejectedLengths, i), invPairs);
    sum += t.loss;
    p.dPolicyChosen[i] = static_cast<float>(t.dChosen);
    p.dPolicyRejected[i] = static_cast<float>(t.dRejected);

    m.add(s.beta * t.rewardChosen, s.beta * t.rewardRejected, t.xc, t.xr);
  }
  *p.loss = lossmath::cpoTotalLoss(sum, invPairs, p.cpoAlpha, p.nll);
  if (p.metrics) *p.metrics = {m.mean(p.pairs), p.nll};
}

}  // namespace rlhf::cpu
