// GRPO's per-token and per-row math (TRL 1.x `GRPOTrainer._compute_loss`, trl-losses.md §6.7–6.10),
// in float64, shared by the CPU kernel (src/cpu/losses/grpo.cpp) and the CUDA kernel
// (cuda/losses/grpo.cu).
//
// Token (i, t) with mask M, advantage A_i, log-ratio lr = logp − oldLogp (0 on-policy):
//   ρ = e^{lr} (token level) or ρ_i = exp(Σ_t M lr / max(n_i, 1)) (sequence level, GSPO),
//   ρ̂ = clamp(ρ, 1 − ε_low, 1 + ε_high), ρ' = min(ρ, δ) when δ is set, else ρ,
//   ℓ = −min(ρ'·A, ρ̂·A) + β·(e^{ref − logp} − (ref − logp) − 1),
// and the loss is Σ_{i,t} M·ℓ·c_i with the per-row coefficient c_i of the aggregation:
//   grpo 1/(max(n_i,1)·B·GA), bnpo 1/(max(N,1)·GA), dr_grpo 1/(B·L_max·GA), dapo 1/normaliser,
// where n_i = Σ_t M, N = Σ_i n_i. Gradients follow PyTorch's rules at the kinks: clamp passes the
// gradient on its closed interval, and min splits it evenly between two equal branches.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "../../host_device.h"
#include "../../kernels.h"

namespace rlhf::lossmath {

// std::min / std::max on doubles (the second argument only when strictly smaller / larger), usable
// in device code.
RLHF_HOST_DEVICE inline double minOf(double a, double b) { return b < a ? b : a; }
RLHF_HOST_DEVICE inline double maxOf(double a, double b) { return a < b ? b : a; }

// The clip settings: ρ̂ = clamp(ρ, lo, hi); ρ' = min(ρ, cap) with cap = δ, or +∞ when δ is off.
struct GrpoClip {
  double lo, hi, cap;
};
inline GrpoClip grpoClip(const GrpoLossArgs& p) {
  return {1.0 - static_cast<double>(p.epsilonLow), 1.0 + static_cast<double>(p.epsilonHigh),
          p.delta > 0.0f ? static_cast<double>(p.delta) : std::numeric_limits<double>::infinity()};
}

// The clipped surrogate −min(ρ'A, ρ̂A) at one ratio, its derivative w.r.t. log ρ, and the
// clip-ratio flags TRL logs (computed, like TRL's, on the δ-capped ratio ρ').
struct Surrogate {
  double loss, dLogRatio;
  bool lowClipped, highClipped;
};
RLHF_HOST_DEVICE inline Surrogate surrogate(double rho, double adv, const GrpoClip& clip) {
  const double rhoCapped = minOf(rho, clip.cap);
  const double dCapped = rho <= clip.cap ? rho : 0.0;
  const double rhoClipped = minOf(maxOf(rho, clip.lo), clip.hi);
  const double dClipped = rho >= clip.lo && rho <= clip.hi ? rho : 0.0;
  const double u = rhoCapped * adv, v = rhoClipped * adv;
  const double dRatio = u < v ? dCapped : u > v ? dClipped : 0.5 * (dCapped + dClipped);
  return {-minOf(u, v), -adv * dRatio, rhoCapped < clip.lo && adv < 0.0, rhoCapped > clip.hi && adv > 0.0};
}

// Sequence level (GSPO): the row's one surrogate at ρ_i = exp(log w_i), shared by its n_i tokens;
// each masked token's log-prob moves log w_i by 1/max(n_i, 1), so the row's surrogate sum
// (n_i · loss) has derivative tokenGrad w.r.t. each of them.
RLHF_HOST_DEVICE inline double sequenceLogWeight(double maskedLogRatioSum, double tokens) {
  return maskedLogRatioSum / std::fmax(tokens, 1.0);
}
struct SequenceSurrogate {
  Surrogate s;
  double tokenGrad;
};
RLHF_HOST_DEVICE inline SequenceSurrogate sequenceSurrogate(double logWeight, double tokens, double adv,
                                                            const GrpoClip& clip) {
  const Surrogate s = surrogate(std::exp(logWeight), adv, clip);
  return {s, s.dLogRatio * tokens / std::fmax(tokens, 1.0)};
}
// The row's loss at sequence level, given Σ_t M·k3 over the row.
RLHF_HOST_DEVICE inline double sequenceRowLoss(double c, const SequenceSurrogate& q, double tokens, double beta,
                                               double klSum) {
  return c * (q.s.loss * tokens + beta * klSum);
}

// The k3 KL estimate e^d − d − 1 with d = ref − logp, and its derivative 1 − e^d w.r.t. logp.
struct K3 {
  double value, dLogp;
};
RLHF_HOST_DEVICE inline K3 k3(double ref, double logp) {
  const double d = ref - logp;
  const double ed = std::exp(d);
  return {ed - d - 1.0, 1.0 - ed};
}

// The aggregation's per-row coefficient c_i.
struct GrpoAggregation {
  GrpoLossType type;
  double rows, maxCompletionLength, gradAccumSteps, tokenNormalizer;
  double totalTokens;  // N (bnpo)
};
RLHF_HOST_DEVICE inline double grpoCoefficient(const GrpoAggregation& g, double rowTokens) {
  switch (g.type) {
    case GrpoLossType::Grpo: return 1.0 / (std::fmax(rowTokens, 1.0) * g.rows * g.gradAccumSteps);
    case GrpoLossType::Bnpo: return 1.0 / (std::fmax(g.totalTokens, 1.0) * g.gradAccumSteps);
    case GrpoLossType::DrGrpo: return 1.0 / (g.rows * g.maxCompletionLength * g.gradAccumSteps);
    case GrpoLossType::Dapo: return 1.0 / g.tokenNormalizer;
  }
  return 0.0;
}
inline GrpoAggregation grpoAggregation(const GrpoLossArgs& p, double totalTokens) {
  return {p.lossType, static_cast<double>(p.rows), static_cast<double>(p.maxCompletionLength),
          static_cast<double>(p.gradAccumSteps), p.tokenNormalizer, totalTokens};
}

// TRL's per-sequence clipped fraction, the operand of clip_ratio/low_min and high_max: the flag
// itself at sequence level, else the row's clipped count over its tokens, NaN for a row without
// tokens (which nanmin/nanmax skip: fmin/fmax ignore NaN).
RLHF_HOST_DEVICE inline double rowClipFraction(double clipped, double tokens, bool sequenceLevel) {
  if (sequenceLevel) return clipped;
  return tokens == 0.0 ? std::nan("") : clipped / tokens;
}

// The metrics from the batch sums: kl = Σ k3 over the masked tokens; low, high, region = Σ of the
// rows' clipped counts (token level) or flags (sequence level); lowMin, highMax as rowClipFraction's
// fmin / fmax over the rows (NaN if every row was skipped).
inline GrpoMetrics grpoMetrics(double kl, double low, double high, double region, double lowMin, double highMax,
                               double totalTokens, double rows, bool sequenceLevel, bool withKl) {
  // Clip ratios average over masked tokens, or over rows at sequence level; kl always over tokens.
  const double tokenCount = std::fmax(totalTokens, 1.0);
  const double clipCount = sequenceLevel ? rows : tokenCount;
  return {withKl ? kl / tokenCount : 0.0, low / clipCount, high / clipCount, region / clipCount,
          lowMin, highMax, totalTokens};
}

}  // namespace rlhf::lossmath
