// ORPO (TRL 1.x `ORPOTrainer.odds_ratio_loss`, trl-losses.md §4), reference-free, in float64.
// With average log-probs a = S_c/n_c, b = S_r/n_r (both < 0):
//   log_odds = (a − b) − (log(1 − e^a) − log(1 − e^b)),
//   loss = nll − mean_pairs(β · logσ(log_odds)).
// d log_odds / da = 1 + e^a/(1 − e^a) = −1/expm1(a), and likewise −(−1/expm1(b)) for b.
#include <cmath>

#include "../../kernels.h"
#include "loss_math.h"

namespace rlhf::cpu {

void orpoLoss(const OrpoLossArgs& p) {
  using lossmath::log1mexp;
  using lossmath::logSigmoid;
  using lossmath::sigmoid;
  const double beta = p.beta;
  const double invPairs = 1.0 / static_cast<double>(p.pairs);
  double sumLogSigmoid = 0.0;
  lossmath::PairMetricsSum m;
  double sumLogOdds = 0.0;
  for (int64_t i = 0; i < p.pairs; ++i) {
    const double nc = std::fmax(p.chosenLengths[i], 1.0f), nr = std::fmax(p.rejectedLengths[i], 1.0f);
    const double a = p.policyChosen[i] / nc, b = p.policyRejected[i] / nr;
    const double logOdds = (a - b) - (log1mexp(a) - log1mexp(b));
    sumLogSigmoid += logSigmoid(logOdds);
    // d/d log_odds of −β·logσ(log_odds)/P is −β·σ(−log_odds)/P.
    const double dLogOdds = -beta * sigmoid(-logOdds) * invPairs;
    p.dPolicyChosen[i] = static_cast<float>(dLogOdds * (-1.0 / std::expm1(a)) / nc);
    p.dPolicyRejected[i] = static_cast<float>(dLogOdds * (1.0 / std::expm1(b)) / nr);

    m.add(beta * a, beta * b, a, b);
    sumLogOdds += logOdds;
  }
  *p.loss = p.nll - beta * sumLogSigmoid * invPairs;
  if (p.metrics) *p.metrics = {m.mean(p.pairs), sumLogSigmoid * invPairs, sumLogOdds * invPairs, p.nll};
}

}  // namespace rlhf::cpu
