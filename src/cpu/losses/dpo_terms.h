// DPO's per-pair math (TRL 1.x `DPOTrainer._compute_loss`, trl-losses.md §2.4–2.8), in float64,
// shared by the CPU kernel (src/cpu/losses/dpo.cpp) and the CUDA kernel (cuda/losses/dpo.cu).
// Per pair: log-ratios u_c = S_c − S_c^ref, u_r = S_r − S_r^ref; f-divergence scores s_c = s(u_c),
// s_r = s(u_r); Δ = s_c − s_r; h = β·Δ. Every loss type gives a per-pair loss L_k, and d L_k / d S_c,
// d S_r follow by the chain rule through s(u) (the reference sums are constants).
#pragma once

#include <cmath>
#include <cstdint>

#include "../../host_device.h"
#include "../../kernels.h"
#include "loss_math.h"

namespace rlhf::lossmath {

// The settings every pair shares.
struct DpoSettings {
  FDivergence fDivergence;
  double fAlphaCoef, beta, labelSmoothing, discopopTau;
};

// An f-divergence score s(u) and its slope ds/du.
struct Score {
  double value, slope;
};

RLHF_HOST_DEVICE inline Score fDivergenceScore(FDivergence f, double alphaCoef, double u) {
  switch (f) {
    case FDivergence::ReverseKl:
      return {u, 1.0};
    case FDivergence::ForwardKl: {
      const double e = std::exp(-u);  // s = −e^−u
      return {-e, e};
    }
    case FDivergence::JsDivergence:
      return {logSigmoid(u), sigmoid(-u)};
    case FDivergence::AlphaDivergence: {
      // |α − 1| < 1e-6 is the log limit (reverse KL). Otherwise s = e^{min((α−1)u, 80)} / (α−1):
      // TRL clamps the exponent at 80 (float32 logits) so the exponential stays representable; the
      // clamp is flat, so the slope is 0 beyond it.
      const double am1 = alphaCoef - 1.0;
      if (std::fabs(am1) < 1e-6) return {u, 1.0};
      constexpr double kExponentCap = 80.0;
      const double t = am1 * u;
      if (t > kExponentCap) return {std::exp(kExponentCap) / am1, 0.0};
      const double e = std::exp(t);
      return {e / am1, e};
    }
  }
  return {u, 1.0};
}

// One pair as the loss types see it.
struct DpoPair {
  double sc, sr;  // f-divergence scores
  double uc, ur;  // raw log-ratios (apo_* use these)
  double nc, nr;  // completion lengths clamped to ≥ 1 (ipo, sigmoid_norm)
};

// One loss type's per-pair loss and its partial derivatives with respect to the scores and to the
// raw log-ratios (the total derivative w.r.t. u is dScore · s'(u) + dRatio).
struct DpoTerm {
  double loss;
  double dScoreChosen = 0.0, dScoreRejected = 0.0;
  double dRatioChosen = 0.0, dRatioRejected = 0.0;
};

// −(1 − ε)·logσ(h) + ε·logσ(−h) over (1 − 2ε): the robust DPO loss; d/dh alongside.
RLHF_HOST_DEVICE inline DpoTerm robustTerm(double h, double eps) {
  const double norm = 1.0 - 2.0 * eps;
  const double loss = (-(1.0 - eps) * logSigmoid(h) + eps * logSigmoid(-h)) / norm;
  const double dh = (-(1.0 - eps) * sigmoid(-h) - eps * sigmoid(h)) / norm;
  return {loss, dh, -dh};
}

// Per-pair loss of one type. `sft` is a batch-level mean (dpoSftTerm); here it is 0.
RLHF_HOST_DEVICE inline DpoTerm dpoPairTerm(DpoLossType type, const DpoPair& x, double beta, double eps, double tau) {
  const double delta = x.sc - x.sr;
  const double h = beta * delta;
  switch (type) {
    case DpoLossType::Sigmoid: {
      const double dh = -beta * sigmoid(-h);  // −logσ(h)
      return {-logSigmoid(h), dh, -dh};
    }
    case DpoLossType::Hinge: {
      // max(0, 1 − h); like relu's backward, no slope at the kink.
      if (1.0 - h <= 0.0) return {0.0};
      return {1.0 - h, -beta, beta};
    }
    case DpoLossType::Ipo: {
      // (Δ̄ − 1/(2β))² with the scores averaged over each completion's tokens.
      const double e = x.sc / x.nc - x.sr / x.nr - 0.5 / beta;
      return {e * e, 2.0 * e / x.nc, -2.0 * e / x.nr};
    }
    case DpoLossType::Robust: {
      DpoTerm t = robustTerm(h, eps);
      t.dScoreChosen *= beta;
      t.dScoreRejected *= beta;
      return t;
    }
    case DpoLossType::ExoPair: {
      // σ(h)(logσ(h) − log(1−ε)) + σ(−h)(logσ(−h) − log ε); using logσ(h) − logσ(−h) = h, its
      // derivative is σ(h)σ(−h)·(h − log((1−ε)/ε)).
      const double q = sigmoid(h), qn = sigmoid(-h);
      const double logPw = std::log1p(-eps), logPl = std::log(eps);
      const double loss = q * (logSigmoid(h) - logPw) + qn * (logSigmoid(-h) - logPl);
      const double dh = beta * q * qn * (h - logPw + logPl);
      return {loss, dh, -dh};
    }
    case DpoLossType::NcaPair: {
      // a = β s_c, b = β s_r: −logσ(a) − ½logσ(−a) − ½logσ(−b).
      const double a = beta * x.sc, b = beta * x.sr;
      const double loss = -logSigmoid(a) - 0.5 * logSigmoid(-a) - 0.5 * logSigmoid(-b);
      return {loss, beta * (-sigmoid(-a) + 0.5 * sigmoid(a)), beta * 0.5 * sigmoid(b)};
    }
    case DpoLossType::BcoPair: {
      const double a = beta * x.sc, b = beta * x.sr;  // −logσ(a) − logσ(−b)
      return {-logSigmoid(a) - logSigmoid(-b), -beta * sigmoid(-a), beta * sigmoid(b)};
    }
    case DpoLossType::SppoHard: {
      const double ec = x.sc - 0.5 / beta, er = x.sr + 0.5 / beta;
      return {ec * ec + er * er, 2.0 * ec, 2.0 * er};
    }
    case DpoLossType::ApoZero: {
      // (1 − σ(β u_c)) + σ(β u_r), on the raw log-ratios.
      const double pc = sigmoid(beta * x.uc), pr = sigmoid(beta * x.ur);
      DpoTerm t{1.0 - pc + pr};
      t.dRatioChosen = -beta * pc * (1.0 - pc);
      t.dRatioRejected = beta * pr * (1.0 - pr);
      return t;
    }
    case DpoLossType::ApoDown: {
      // σ(β u_c) + (1 − σ(h)).
      const double pc = sigmoid(beta * x.uc), ph = sigmoid(h);
      const double dh = -beta * ph * (1.0 - ph);
      DpoTerm t{pc + 1.0 - ph, dh, -dh};
      t.dRatioChosen = beta * pc * (1.0 - pc);
      return t;
    }
    case DpoLossType::Discopop: {
      // (1 − w)·(−logσ(h)) + w·e^−h with w = σ(h/τ). w·e^−h is formed as exp(logσ(h/τ) − h), which
      // stays finite where e^−h alone would overflow; dw/dh = w(1 − w)/τ.
      const double w = sigmoid(h / tau);
      const double we = std::exp(logSigmoid(h / tau) - h);
      const double logistic = -logSigmoid(h);
      const double loss = (1.0 - w) * logistic + we;
      const double dwdh = w * (1.0 - w) / tau;
      const double dh = beta * (-dwdh * logistic - (1.0 - w) * sigmoid(-h) + (1.0 - w) / tau * we - we);
      return {loss, dh, -dh};
    }
    case DpoLossType::SigmoidNorm: {
      const double hn = beta * (x.sc / x.nc - x.sr / x.nr);  // −logσ(β Δ̄)
      const double dhn = -beta * sigmoid(-hn);
      return {-logSigmoid(hn), dhn / x.nc, -dhn / x.nr};
    }
    case DpoLossType::Sft:
      break;
  }
  return {0.0};
}

// Adds one pair's weighted losses to `loss` and their derivatives w.r.t. S_c and S_r to dChosen and
// dRejected, type by type in list order: weights[k]·pairScale·L_k for every listed type but sft
// (pairScale = the WPO pair weight / P). uc, ur are the log-ratios, nc, nr the clamped lengths.
// W is the weights' element type (the CPU takes the caller's float list as it is).
template <typename W>
RLHF_HOST_DEVICE inline void addDpoPair(const DpoSettings& s, const DpoLossType* types, const W* weights,
                                        int32_t numTypes, double uc, double ur, double nc, double nr,
                                        double pairScale, double& loss, double& dChosen, double& dRejected) {
  const Score fc = fDivergenceScore(s.fDivergence, s.fAlphaCoef, uc);
  const Score fr = fDivergenceScore(s.fDivergence, s.fAlphaCoef, ur);
  const DpoPair x{fc.value, fr.value, uc, ur, nc, nr};
  for (int32_t k = 0; k < numTypes; ++k) {
    if (types[k] == DpoLossType::Sft) continue;
    const DpoTerm t = dpoPairTerm(types[k], x, s.beta, s.labelSmoothing, s.discopopTau);
    const double scale = weights[k] * pairScale;
    loss += scale * t.loss;
    dChosen += scale * (t.dScoreChosen * fc.slope + t.dRatioChosen);
    dRejected += scale * (t.dScoreRejected * fr.slope + t.dRatioRejected);
  }
}

// sft: the token-mean NLL of the chosen completions, −Σ S_c / max(Σ n_c, 1), broadcast to every
// pair and so scaled by the mean pair weight (Σ pw / P, with P = 1 / invPairs), times the summed
// weight of the sft entries. `grad` is its derivative w.r.t. every S_c.
struct SftTerm {
  double loss, grad;
};
RLHF_HOST_DEVICE inline SftTerm dpoSftTerm(double sftWeight, double sumChosen, double chosenTokens,
                                           double sumPairWeights, double invPairs) {
  chosenTokens = std::fmax(chosenTokens, 1.0);
  const double meanPairWeight = sumPairWeights * invPairs;
  return {sftWeight * meanPairWeight * (-sumChosen / chosenTokens), sftWeight * meanPairWeight * (-1.0 / chosenTokens)};
}

}  // namespace rlhf::lossmath
