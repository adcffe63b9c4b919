// DPO and its variants (TRL 1.x `DPOTrainer._compute_loss`, trl-losses.md §2.4–2.8), in float64.
// The per-pair math is in dpo_terms.h (shared with the CUDA kernel). Every loss type k gives a
// per-pair loss L_k,i;
//   loss = Σ_k w_k · mean_i(pw_i · L_k,i)   (pw = WPO pair weights, 1 when absent),
// plus the batch-level sft term. A batch is a few hundred pairs at most, so one serial pass is all
// it takes.
#include <cmath>

#include "../../kernels.h"
#include "dpo_terms.h"
#include "loss_math.h"

namespace rlhf::cpu {

void dpoLoss(const DpoLossArgs& p) {
  const int64_t pairs = p.pairs;
  const lossmath::DpoSettings settings{p.fDivergence, p.fAlphaCoef, p.beta, p.labelSmoothing, p.discopopTau};
  const double beta = p.beta;
  const double invPairs = 1.0 / static_cast<double>(pairs);

  // sft's gradient is the same for every S_c; it needs the batch sums first.
  double sftWeight = 0.0;
  for (int32_t k = 0; k < p.numLossTypes; ++k) {
    if (p.lossTypes[k] == DpoLossType::Sft) sftWeight += p.lossWeights[k];
  }
  lossmath::SftTerm sft{0.0, 0.0};
  if (sftWeight != 0.0) {
    double sumChosen = 0.0, chosenTokens = 0.0, sumPairWeights = 0.0;
    for (int64_t i = 0; i < pairs; ++i) {
      sumChosen += p.policyChosen[i];
      chosenTokens += p.chosenLengths[i];
      sumPairWeights += p.pairWeights ? p.pairWeights[i] : 1.0;
    }
    sft = lossmath::dpoSftTerm(sftWeight, sumChosen, chosenTokens, sumPairWeights, invPairs);
  }

  double loss = sft.loss;
  lossmath::PairMetricsSum m;
  for (int64_t i = 0; i < pairs; ++i) {
    const double uc = static_cast<double>(p.policyChosen[i]) - p.refChosen[i];
    const double ur = static_cast<double>(p.policyRejected[i]) - p.refRejected[i];
    const double pairScale = (p.pairWeights ? p.pairWeights[i] : 1.0) * invPairs;
    double dChosen = sft.grad, dRejected = 0.0;
    lossmath::addDpoPair(settings, p.lossTypes, p.lossWeights, p.numLossTypes, uc, ur,
                         lossmath::clampedLength(p.chosenLengths, i), lossmath::clampedLength(p.rejectedLengths, i),
                         pairScale, loss, dChosen, dRejected);
    p.dPolicyChosen[i] = static_cast<float>(dChosen);
    p.dPolicyRejected[i] = static_cast<float>(dRejected);

    // Metrics use the reverse-KL rewards β·u whatever the loss type or f-divergence.
    m.add(beta * uc, beta * ur, p.policyChosen[i], p.policyRejected[i]);
  }
  *p.loss = loss;
  if (p.metrics) *p.metrics = m.mean(pairs);
}

}  // namespace rlhf::cpu
