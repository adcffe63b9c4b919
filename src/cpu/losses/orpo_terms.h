// ORPO's per-pair math (TRL 1.x `ORPOTrainer.odds_ratio_loss`, trl-losses.md §4), in float64,
// shared by the CPU kernel (src/cpu/losses/orpo.cpp) and the CUDA kernel (cuda/losses/orpo.cu).
// With average log-probs a = S_c/n_c, b = S_r/n_r (both < 0):
//   log_odds = (a − b) − (log(1 − e^a) − log(1 − e^b)),
//   loss = nll − mean_pairs(β · logσ(log_odds)).
// d log_odds / da = 1 + e^a/(1 − e^a) = −1/expm1(a), and likewise −(−1/expm1(b)) for b.
#pragma once

#include <cmath>

#include "../../host_device.h"
#include "loss_math.h"

namespace rlhf::lossmath {

struct OrpoPairTerm {
  double a, b;  // average log-probs
  double logOdds, logSigmoidOdds;
  double dChosen, dRejected;  // d loss / d S_c, d S_r (the mean over P pairs included)
};
// sc, sr: the sums S; nc, nr: the clamped lengths.
RLHF_HOST_DEVICE inline OrpoPairTerm orpoPairTerm(double sc, double sr, double nc, double nr, double beta,
                                                  double invPairs) {
  const double a = sc / nc, b = sr / nr;
  const double logOdds = (a - b) - (log1mexp(a) - log1mexp(b));
  // d/d log_odds of −β·logσ(log_odds)/P is −β·σ(−log_odds)/P.
  const double dLogOdds = -beta * sigmoid(-logOdds) * invPairs;
  return {a, b, logOdds, logSigmoid(logOdds), dLogOdds * (-1.0 / std::expm1(a)) / nc,
          dLogOdds * (1.0 / std::expm1(b)) / nr};
}

// loss = nll − β · mean_pairs(logσ(log_odds)), from the sum of logσ(log_odds).
inline double orpoTotalLoss(double nll, double beta, double sumLogSigmoidOdds, double invPairs) {
  return nll - beta * sumLogSigmoidOdds * invPairs;
}

}  // namespace rlhf::lossmath
