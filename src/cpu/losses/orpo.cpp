// ORPO (TRL 1.x `ORPOTrainer.odds_ratio_loss`, trl-losses.md §4), reference-free, in float64; the
// per-pair math is in orpo_terms.h (shared with the CUDA kernel).
#include "../../kernels.h"
#include "loss_math.h"
#include "orpo_terms.h"

namespace rlhf::cpu {

void orpoLoss(const OrpoLossArgs& p) {
  const double beta = p.beta;
  const double invPairs = 1.0 / static_cast<double>(p.pairs);
  double sumLogSigmoid = 0.0;
  lossmath::PairMetricsSum m;
  double sumLogOdds = 0.0;
  for (int64_t i = 0; i < p.pairs; ++i) {
    const lossmath::OrpoPairTerm t =
        lossmath::orpoPairTerm(p.policyChosen[i], p.policyRejected[i], lossmath::clampedLength(p.chosenLengths, i),
                               lossmath::clampedLength(p.rejectedLengths, i), beta, invPairs);
    sumLogSigmoid += t.logSigmoidOdds;
    p.dPolicyChosen[i] = static_cast<float>(t.dChosen);
    p.dPolicyRejected[i] = static_cast<float>(t.dRejected);

    m.add(beta * t.a, beta * t.b, t.a, t.b);
    sumLogOdds += t.logOdds;
  }
  *p.loss = lossmath::orpoTotalLoss(p.nll, beta, sumLogSigmoid, invPairs);
  if (p.metrics) *p.metrics = {m.mean(p.pairs), sumLogSigmoid * invPairs, sumLogOdds * invPairs, p.nll};
}

}  // namespace rlhf::cpu
