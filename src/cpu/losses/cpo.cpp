// CPO, SimPO and AlphaPO (TRL 1.x `CPOTrainer.cpo_loss`, trl-losses.md §5), reference-free, in
// float64. Scores x are the sums S (sigmoid, hinge) or the averages S/n (ipo, simpo); with
// alpha ≠ 0 each is reshaped to r(x) = (1 − e^{−alpha·x})/alpha (AlphaPO), r'(x) = e^{−alpha·x}.
// Δ = r(x_c) − r(x_r), and per pair, with ε the label smoothing and γ = simpo_gamma:
//   sigmoid: −(1−ε)·logσ(βΔ) − ε·logσ(−βΔ)        simpo: the same on βΔ − γ
//   hinge:   max(0, 1 − βΔ)                        ipo:   (Δ − 1/(2β))²
// loss = mean_pairs(L) + cpo_alpha · nll.
#include <cmath>

#include "../../kernels.h"
#include "loss_math.h"

namespace rlhf::cpu {
namespace {

// The AlphaPO reward r(x) and its slope; the identity when alpha == 0.
struct Reward {
  double value, slope;
};
Reward reshape(double x, double alpha) {
  if (alpha == 0.0) return {x, 1.0};
  const double e = std::exp(-alpha * x);
  return {(1.0 - e) / alpha, e};
}

}  // namespace

void cpoLoss(const CpoLossArgs& p) {
  using lossmath::logSigmoid;
  using lossmath::sigmoid;
  const double beta = p.beta, eps = p.labelSmoothing, alpha = p.alpha;
  const bool averaged = p.lossType == CpoLossType::Ipo || p.lossType == CpoLossType::Simpo;
  const double invPairs = 1.0 / static_cast<double>(p.pairs);
  double sum = 0.0;
  lossmath::PairMetricsSum m;
  for (int64_t i = 0; i < p.pairs; ++i) {
    const double nc = averaged ? std::fmax(p.chosenLengths[i], 1.0f) : 1.0;
    const double nr = averaged ? std::fmax(p.rejectedLengths[i], 1.0f) : 1.0;
    const double xc = p.policyChosen[i] / nc, xr = p.policyRejected[i] / nr;
    const Reward rc = reshape(xc, alpha), rr = reshape(xr, alpha);
    const double delta = rc.value - rr.value;
    double loss = 0.0, dDelta = 0.0;  // per-pair loss and d loss / dΔ
    switch (p.lossType) {
      case CpoLossType::Sigmoid:
      case CpoLossType::Simpo: {
        const double h = beta * delta - (p.lossType == CpoLossType::Simpo ? p.simpoGamma : 0.0);
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
    sum += loss;
    p.dPolicyChosen[i] = static_cast<float>(dDelta * invPairs * rc.slope / nc);
    p.dPolicyRejected[i] = static_cast<float>(-dDelta * invPairs * rr.slope / nr);

    m.add(beta * rc.value, beta * rr.value, xc, xr);
  }
  *p.loss = sum * invPairs + p.cpoAlpha * p.nll;
  if (p.metrics) *p.metrics = {m.mean(p.pairs), p.nll};
}

}  // namespace rlhf::cpu
