// GRPO's clipped surrogate with the k3 KL penalty (TRL 1.x `GRPOTrainer._compute_loss`,
// trl-losses.md §6.7–6.10), in float64 per token, threaded over rows.
//
// Token (i, t) with mask M, advantage A_i, log-ratio lr = logp − oldLogp (0 on-policy):
//   ρ = e^{lr} (token level) or ρ_i = exp(Σ_t M lr / max(n_i, 1)) (sequence level, GSPO),
//   ρ̂ = clamp(ρ, 1 − ε_low, 1 + ε_high), ρ' = min(ρ, δ) when δ is set, else ρ,
//   ℓ = −min(ρ'·A, ρ̂·A) + β·(e^{ref − logp} − (ref − logp) − 1),
// and the loss is Σ_{i,t} M·ℓ·c_i with the per-row coefficient c_i of the aggregation:
//   grpo 1/(max(n_i,1)·B·GA), bnpo 1/(max(N,1)·GA), dr_grpo 1/(B·L_max·GA), dapo 1/normaliser,
// where n_i = Σ_t M, N = Σ_i n_i. Gradients follow PyTorch's rules at the kinks: clamp passes the
// gradient on its closed interval, and min splits it evenly between two equal branches.
#include <algorithm>
#include <cmath>
#include <limits>

#include "../../kernels.h"
#include "../../memory.h"
#include "../parallel.h"

namespace rlhf::cpu {
namespace {

// The clipped surrogate −min(ρ'A, ρ̂A) at one ratio, its derivative w.r.t. log ρ, and the
// clip-ratio flags TRL logs (computed, like TRL's, on the δ-capped ratio ρ').
struct Surrogate {
  double loss, dLogRatio;
  bool lowClipped, highClipped;
};

Surrogate surrogate(double rho, double adv, double lo, double hi, double delta) {
  const bool capped = delta > 0.0 && rho > delta;
  const double rhoCapped = capped ? delta : rho;
  const double dCapped = capped ? 0.0 : rho;
  const double rhoClipped = std::min(std::max(rho, lo), hi);
  const double dClipped = rho >= lo && rho <= hi ? rho : 0.0;
  const double u = rhoCapped * adv, v = rhoClipped * adv;
  const double dRatio = u < v ? dCapped : u > v ? dClipped : 0.5 * (dCapped + dClipped);
  return {-std::min(u, v), -adv * dRatio, rhoCapped < lo && adv < 0.0, rhoCapped > hi && adv > 0.0};
}

// Per-row sums; `loss` is Σ_t M·ℓ before the row's aggregation coefficient.
struct RowStats {
  double tokens;     // n_i
  double logWeight;  // sequence level: Σ_t M·lr / max(n_i, 1)
  double loss, kl;
  double low, high, region;  // clipped token counts (token level) or 0/1 flags (sequence level)
};

}  // namespace

void grpoLoss(const GrpoLossArgs& p) {
  const int64_t rows = p.rows, seq = p.seq;
  const bool sequenceLevel = p.importanceLevel == ImportanceLevel::Sequence;
  const double lo = 1.0 - static_cast<double>(p.epsilonLow), hi = 1.0 + static_cast<double>(p.epsilonHigh);
  const double beta = p.beta, delta = p.delta, ga = p.gradAccumSteps;
  const int64_t grain = std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(seq, 1));
  ScratchBuffer<RowStats> stats(static_cast<size_t>(rows));

  // Pass 1: token counts, and the sequence-level log importance weights.
  parallelFor(rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* mask = p.mask + i * seq;
      double tokens = 0.0, logRatioSum = 0.0;
      for (int64_t t = 0; t < seq; ++t) tokens += mask[t];
      if (sequenceLevel && p.oldLogp) {
        const float* logp = p.logp + i * seq;
        const float* old = p.oldLogp + i * seq;
        for (int64_t t = 0; t < seq; ++t) {
          if (mask[t] != 0.0f) logRatioSum += static_cast<double>(logp[t]) - old[t];
        }
      }
      stats[i] = {tokens, logRatioSum / std::max(tokens, 1.0), 0.0, 0.0, 0.0, 0.0, 0.0};
    }
  });
  double totalTokens = 0.0;
  for (int64_t i = 0; i < rows; ++i) totalTokens += stats[i].tokens;

  const double b = static_cast<double>(rows);
  auto coefficient = [&](double rowTokens) {
    switch (p.lossType) {
      case GrpoLossType::Grpo: return 1.0 / (std::max(rowTokens, 1.0) * b * ga);
      case GrpoLossType::Bnpo: return 1.0 / (std::max(totalTokens, 1.0) * ga);
      case GrpoLossType::DrGrpo: return 1.0 / (b * static_cast<double>(p.maxCompletionLength) * ga);
      case GrpoLossType::Dapo: return 1.0 / p.tokenNormalizer;
    }
    return 0.0;
  };

  // Pass 2: per-token loss, gradient and clip statistics.
  parallelFor(rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      RowStats& row = stats[i];
      const float* logp = p.logp + i * seq;
      const float* old = p.oldLogp ? p.oldLogp + i * seq : nullptr;
      const float* ref = p.refLogp ? p.refLogp + i * seq : nullptr;
      const float* mask = p.mask + i * seq;
      float* dLogp = p.dLogp + i * seq;
      const double adv = p.advantages[i];
      const double c = coefficient(row.tokens);
      // Sequence level: one surrogate per row; each masked token's log-prob moves log w_i by
      // 1/max(n_i, 1), and the row's n_i tokens all carry ℓ_i.
      Surrogate rowSurrogate{};
      double seqGrad = 0.0;
      if (sequenceLevel) {
        rowSurrogate = surrogate(std::exp(row.logWeight), adv, lo, hi, delta);
        seqGrad = rowSurrogate.dLogRatio * row.tokens / std::max(row.tokens, 1.0);
        row.loss = rowSurrogate.loss * row.tokens;
        row.low = rowSurrogate.lowClipped;
        row.high = rowSurrogate.highClipped;
        row.region = rowSurrogate.lowClipped || rowSurrogate.highClipped;
      }
      for (int64_t t = 0; t < seq; ++t) {
        if (mask[t] == 0.0f) {
          dLogp[t] = 0.0f;
          continue;
        }
        double grad;
        if (sequenceLevel) {
          grad = seqGrad;
        } else {
          const double lr = old ? static_cast<double>(logp[t]) - old[t] : 0.0;
          const Surrogate s = surrogate(std::exp(lr), adv, lo, hi, delta);
          row.loss += s.loss;
          row.low += s.lowClipped;
          row.high += s.highClipped;
          row.region += s.lowClipped || s.highClipped;
          grad = s.dLogRatio;
        }
        if (ref) {
          // k3 = e^d − d − 1 with d = ref − logp; dk3/dlogp = 1 − e^d.
          const double d = static_cast<double>(ref[t]) - logp[t];
          const double ed = std::exp(d);
          const double k3 = ed - d - 1.0;
          row.kl += k3;
          row.loss += beta * k3;
          grad += beta * (1.0 - ed);
        }
        dLogp[t] = static_cast<float>(c * grad);
      }
      row.loss *= c;
    }
  });

  double loss = 0.0, kl = 0.0, low = 0.0, high = 0.0, region = 0.0;
  double lowMin = std::numeric_limits<double>::quiet_NaN(), highMax = lowMin;
  for (int64_t i = 0; i < rows; ++i) {
    const RowStats& row = stats[i];
    loss += row.loss;
    kl += row.kl;
    low += row.low;
    high += row.high;
    region += row.region;
    // TRL's per-sequence clipped fraction: the flag itself at sequence level, else the masked mean
    // over the row (NaN for a row without tokens, which nanmin/nanmax skip).
    if (!sequenceLevel && row.tokens == 0.0) continue;
    const double lowFraction = sequenceLevel ? row.low : row.low / row.tokens;
    const double highFraction = sequenceLevel ? row.high : row.high / row.tokens;
    lowMin = std::isnan(lowMin) ? lowFraction : std::min(lowMin, lowFraction);
    highMax = std::isnan(highMax) ? highFraction : std::max(highMax, highFraction);
  }
  *p.loss = loss;
  if (p.metrics) {
    // Clip ratios average over masked tokens, or over rows at sequence level; kl always over tokens.
    const double tokenCount = std::max(totalTokens, 1.0);
    const double clipCount = sequenceLevel ? b : tokenCount;
    *p.metrics = {p.refLogp ? kl / tokenCount : 0.0, low / clipCount, high / clipCount, region / clipCount,
                  lowMin, highMax, totalTokens};
  }
}

}  // namespace rlhf::cpu
