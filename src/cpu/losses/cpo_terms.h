// CPO / SimPO / AlphaPO per-pair math (TRL 1.x `CPOTrainer.cpo_loss`, trl-losses.md §5), in
// float64, shared by the CPU kernel (src/cpu/losses/cpo.cpp) and the CUDA kernel (cuda/losses/cpo.cu).
// Scores x are the sums S (sigmoid, hinge) or the averages S/n (ipo, simpo); with alpha ≠ 0 each
// is reshaped to r(x) = (1 − e^{−alpha·x})/alpha (AlphaPO), r'(x) = e^{−alpha·x}.
// Δ = r(x_c) − r(x_r), and per pair, with ε the label smoothing and γ = simpo_gamma:
//   sigmoid: −(1−ε)·logσ(βΔ) − ε·logσ(−βΔ)        simpo: the same on βΔ − γ
//   hinge:   max(0, 1 − βΔ)                        ipo:   (Δ − 1/(2β))²
#pragma once

#include <cmath>

#include "../../host_device.h"
#include "../../kernels.h"
#include "loss_math.h"

namespace rlhf::lossmath {

struct CpoSettings {
  CpoLossType type;
  bool averaged;  // scores are S/max(n, 1) (ipo, simpo)
  double beta, labelSmoothing, simpoGamma, alpha;
};
RLHF_HOST_DEVICE inline CpoSettings cpoSettings(const CpoLossArgs& p) {
  return {p.lossType, p.lossType == CpoLossType::Ipo || p.lossType == CpoLossType::Simpo, p.beta, p.labelSmoothing,
          p.simpoGamma, p.alpha};
}

// The AlphaPO reward r(x) and its slope; the identity when alpha == 0.
struct Reward {
  double value, slope;
};
RLHF_HOST_DEVICE inline Reward alphaReshape(double x, double alpha) {
  if (alpha == 0.0) return {x, 1.0};
  const double e = std::exp(-alpha * x);
  return {(1.0 - e) / alpha, e};
}

struct CpoPairTerm {
  double xc, xr;                  // scores (the logps metrics)
  double rewardChosen, rewardRejected;  // reshaped scores (the rewards metrics are β times these)
  double loss;                    // the pair's preference loss
  double dChosen, dRejected;      // d loss / d S_c, d S_r (the mean over P pairs included)
};
// sc, sr: the sums S; nc, nr: the clamped lengths when the scores are averaged, else 1.
RLHF_HOST_DEVICE inline CpoPairTerm cpoPairTerm(const CpoSettings& s, double sc, double sr, double nc, double nr,
                                                double invPairs) {
  const double beta = s.beta, eps = s.labelSmoothing;
  const double xc = sc / nc, xr = sr / nr;
  const Reward rc = alphaReshape(xc, s.alpha), rr = alphaReshape(xr, s.alpha);
  const double delta = rc.value - rr.value;
  double loss = 0.0, dDelta = 0.0;  // per-pair loss and d loss / dΔ
  switch (s.type) {
    case CpoLossType::Sigmoid:
    case CpoLossType::Simpo: {
      const double h = beta * delta - (s.type == CpoLossType::Simpo ? s.simpoGamma : 0.0);
      loss = -(1.0 - eps) * logSigmoid(h) - eps * logSigmoid(-h);
      dDelta = beta * (-(1.0 - eps) * sigmoid(-h) + eps * sigmoid(h));
      break;
    }
    case CpoLossType::Hinge:
      // max(0, 1 − βΔ); no slope at the kink, like relu's backward.
      if (1.0 - beta * delta > 0.0) {
        loss = 1.0 - beta * delta;
        dDelta = -beta;
      }
      break;
    case CpoLossType::Ipo: {
      const double e = delta - 0.5 / beta;
      loss = e * e;
      dDelta = 2.0 * e;
      break;
    }
  }
  return {xc, xr, rc.value, rr.value, loss, dDelta * invPairs * rc.slope / nc, -dDelta * invPairs * rr.slope / nr};
}

// loss = mean_pairs(L_pref) + cpo_alpha · nll, from the sum of the pairs' L_pref.
inline double cpoTotalLoss(double sumPairLoss, double invPairs, float cpoAlpha, double nll) {
  return sumPairLoss * invPairs + cpoAlpha * nll;
}

}  // namespace rlhf::lossmath
