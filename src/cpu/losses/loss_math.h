// Numerically stable scalar functions for the preference and RL losses, in float64. Each is finite
// for every finite argument (log1mexp: for every x < 0), where the textbook formulas overflow or
// cancel: log(1 + e^x) for large x, 1 − e^x near x = 0, ...
#pragma once

#include <cmath>
#include <cstdint>

#include "../../kernels.h"

namespace rlhf::cpu::lossmath {

// σ(x) = 1 / (1 + e^−x), never forming e^{|x|}.
inline double sigmoid(double x) {
  if (x >= 0.0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

// softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^−|x|).
inline double softplus(double x) { return std::fmax(x, 0.0) + std::log1p(std::exp(-std::fabs(x))); }

// log σ(x) = −softplus(−x).
inline double logSigmoid(double x) { return -softplus(-x); }

// log(1 − e^x) for x < 0. Below −ln 2, e^x ≤ 1/2 and log1p(−e^x) is accurate; above it, 1 − e^x
// cancels, so it is formed as −expm1(x) instead (the same branch point as TRL's log1mexp).
inline double log1mexp(double x) {
  constexpr double kMinusLn2 = -0.6931471805599453;
  return x < kMinusLn2 ? std::log1p(-std::exp(x)) : std::log(-std::expm1(x));
}

// Running sums of the pair metrics (PairMetrics) over a batch.
class PairMetricsSum {
 public:
  void add(double rewardChosen, double rewardRejected, double logpChosen, double logpRejected) {
    sum_.rewardsChosen += rewardChosen;
    sum_.rewardsRejected += rewardRejected;
    sum_.rewardsAccuracies += rewardChosen > rewardRejected ? 1.0 : 0.0;
    sum_.rewardsMargins += rewardChosen - rewardRejected;
    sum_.logpsChosen += logpChosen;
    sum_.logpsRejected += logpRejected;
  }
  PairMetrics mean(int64_t pairs) const {
    const double inv = 1.0 / static_cast<double>(pairs);
    return {sum_.rewardsChosen * inv, sum_.rewardsRejected * inv, sum_.rewardsAccuracies * inv,
            sum_.rewardsMargins * inv, sum_.logpsChosen * inv,    sum_.logpsRejected * inv};
  }

 private:
  PairMetrics sum_{};
};

}  // namespace rlhf::cpu::lossmath
