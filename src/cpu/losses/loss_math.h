// Numerically stable scalar functions for the preference and RL losses, in float64. Each is finite
// for every finite argument (log1mexp: for every x < 0), where the textbook formulas overflow or
// cancel: log(1 + e^x) for large x, 1 − e^x near x = 0, ...
// Shared by the CPU kernels and the CUDA kernels (RLHF_HOST_DEVICE), like the per-loss *_terms.h.
#pragma once

#include <cmath>
#include <cstdint>

#include "../../host_device.h"
#include "../../kernels.h"

namespace rlhf::lossmath {

// σ(x) = 1 / (1 + e^−x), never forming e^{|x|}.
RLHF_HOST_DEVICE inline double sigmoid(double x) {
  if (x >= 0.0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

// softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^−|x|).
RLHF_HOST_DEVICE inline double softplus(double x) { return std::fmax(x, 0.0) + std::log1p(std::exp(-std::fabs(x))); }

// log σ(x) = −softplus(−x).
RLHF_HOST_DEVICE inline double logSigmoid(double x) { return -softplus(-x); }

// log(1 − e^x) for x < 0. Below −ln 2, e^x ≤ 1/2 and log1p(−e^x) is accurate; above it, 1 − e^x
// cancels, so it is formed as −expm1(x) instead (the same branch point as TRL's log1mexp).
RLHF_HOST_DEVICE inline double log1mexp(double x) {
  constexpr double kMinusLn2 = -0.6931471805599453;
  return x < kMinusLn2 ? std::log1p(-std::exp(x)) : std::log(-std::expm1(x));
}

// A completion length clamped to ≥ 1 (the divisor of the length-normalised scores); 1 when the
// lengths are absent.
RLHF_HOST_DEVICE inline double clampedLength(const float* lengths, int64_t i) {
  return lengths ? std::fmax(lengths[i], 1.0f) : 1.0;
}

// One pair's terms of the PairMetrics sums: its rewards, whether the chosen one wins, the margin,
// and its logps.
RLHF_HOST_DEVICE inline PairMetrics pairMetricsTerm(double rewardChosen, double rewardRejected, double logpChosen,
                                                    double logpRejected) {
  return {rewardChosen, rewardRejected, rewardChosen > rewardRejected ? 1.0 : 0.0, rewardChosen - rewardRejected,
          logpChosen, logpRejected};
}

// The PairMetrics means from their sums over `pairs` pairs.
inline PairMetrics pairMetricsMean(const PairMetrics& sum, int64_t pairs) {
  const double inv = 1.0 / static_cast<double>(pairs);
  return {sum.rewardsChosen * inv, sum.rewardsRejected * inv, sum.rewardsAccuracies * inv,
          sum.rewardsMargins * inv, sum.logpsChosen * inv,    sum.logpsRejected * inv};
}

// Running sums of the pair metrics (PairMetrics) over a batch, in pair order.
class PairMetricsSum {
 public:
  void add(double rewardChosen, double rewardRejected, double logpChosen, double logpRejected) {
    const PairMetrics t = pairMetricsTerm(rewardChosen, rewardRejected, logpChosen, logpRejected);
    sum_.rewardsChosen += t.rewardsChosen;
    sum_.rewardsRejected += t.rewardsRejected;
    sum_.rewardsAccuracies += t.rewardsAccuracies;
    sum_.rewardsMargins += t.rewardsMargins;
    sum_.logpsChosen += t.logpsChosen;
    sum_.logpsRejected += t.logpsRejected;
  }
  PairMetrics mean(int64_t pairs) const { return pairMetricsMean(sum_, pairs); }

 private:
  PairMetrics sum_{};
};

}  // namespace rlhf::lossmath
