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

// The clip settings: ρ̂ = clamp(ρ, lo, hi); ρ' = min(ρ, cap) with cap = δ, or +∞ when δ is off.
struct Clip {
  double lo, hi, cap;
};

// The clipped surrogate −min(ρ'A, ρ̂A) at one ratio, its derivative w.r.t. log ρ, and the
// clip-ratio flags TRL logs (computed, like TRL's, on the δ-capped ratio ρ').
struct Surrogate {
  double loss, dLogRatio;
  bool lowClipped, highClipped;
};

inline Surrogate surrogate(double rho, double adv, const Clip& clip) {
  const double rhoCapped = std::min(rho, clip.cap);
  const double dCapped = rho <= clip.cap ? rho : 0.0;
  const double rhoClipped = std::min(std::max(rho, clip.lo), clip.hi);
  const double dClipped = rho >= clip.lo && rho <= clip.hi ? rho : 0.0;
  const double u = rhoCapped * adv, v = rhoClipped * adv;
  const double dRatio = u < v ? dCapped : u > v ? dClipped : 0.5 * (dCapped + dClipped);
  return {-std::min(u, v), -adv * dRatio, rhoCapped < clip.lo && adv < 0.0, rhoCapped > clip.hi && adv > 0.0};
}

// Per-row sums; `loss` is Σ_t M·ℓ before the row's aggregation coefficient.
struct RowStats {
  double tokens;     // n_i
  double logWeight;  // sequence level: Σ_t M·lr / max(n_i, 1)
  double loss, kl;
  double low, high, region;  // clipped token counts (token level) or 0/1 flags (sequence level)
};

// One row's tensors, each [T].
struct RowView {
  const float* logp;
  const float* old;  // null on-policy
  const float* ref;  // null without KL
  const float* mask;
  float* dLogp;
  int64_t seq;
};

// Token level: writes dLogp = c·dℓ/dlogp and accumulates the row's sums. Specialised on the
// presence of oldLogp (on-policy, ρ ≡ 1 needs no exponential) and of the KL term, so the loop
// carries no per-token tests beyond the mask.
template <bool kOffPolicy, bool kKl>
void tokenLevelRow(const RowView& r, double adv, double c, const Clip& clip, double beta, RowStats& row) {
  double loss = 0.0, kl = 0.0, low = 0.0, high = 0.0, region = 0.0;
  for (int64_t t = 0; t < r.seq; ++t) {
    if (r.mask[t] == 0.0f) {
      r.dLogp[t] = 0.0f;
      continue;
    }
    const double logp = r.logp[t];
    const Surrogate s = surrogate(kOffPolicy ? std::exp(logp - r.old[t]) : 1.0, adv, clip);
    double tokenLoss = s.loss, grad = s.dLogRatio;
    low += s.lowClipped;
    high += s.highClipped;
    region += s.lowClipped || s.highClipped;
    if (kKl) {
      // k3 = e^d − d − 1 with d = ref − logp; dk3/dlogp = 1 − e^d.
      const double d = r.ref[t] - logp;
      const double ed = std::exp(d);
      kl += ed - d - 1.0;
      tokenLoss += beta * (ed - d - 1.0);
      grad += beta * (1.0 - ed);
    }
    loss += tokenLoss;
    r.dLogp[t] = static_cast<float>(c * grad);
  }
  row.loss = c * loss;
  row.kl = kl;
  row.low = low;
  row.high = high;
  row.region = region;
}

// Sequence level (GSPO): one surrogate per row, shared by its n_i tokens; each masked token's
// log-prob moves log w_i by 1/max(n_i, 1). The KL stays per token.
template <bool kKl>
void sequenceLevelRow(const RowView& r, double adv, double c, const Clip& clip, double beta, RowStats& row) {
  const Surrogate s = surrogate(std::exp(row.logWeight), adv, clip);
  const double seqGrad = s.dLogRatio * row.tokens / std::max(row.tokens, 1.0);
  double kl = 0.0;
  for (int64_t t = 0; t < r.seq; ++t) {
    if (r.mask[t] == 0.0f) {
      r.dLogp[t] = 0.0f;
      continue;
    }
    double grad = seqGrad;
    if (kKl) {
      const double d = static_cast<double>(r.ref[t]) - r.logp[t];
      const double ed = std::exp(d);
      kl += ed - d - 1.0;
      grad += beta * (1.0 - ed);
    }
    r.dLogp[t] = static_cast<float>(c * grad);
  }
  row.loss = c * (s.loss * row.tokens + beta * kl);
  row.kl = kl;
  row.low = s.lowClipped;
  row.high = s.highClipped;
  row.region = s.lowClipped || s.highClipped;
}

}  // namespace

void grpoLoss(const GrpoLossArgs& p) {
  const int64_t rows = p.rows, seq = p.seq;
  const bool sequenceLevel = p.importanceLevel == ImportanceLevel::Sequence;
  const Clip clip{1.0 - static_cast<double>(p.epsilonLow), 1.0 + static_cast<double>(p.epsilonHigh),
                  p.delta > 0.0f ? static_cast<double>(p.delta) : std::numeric_limits<double>::infinity()};
  const double beta = p.beta, ga = p.gradAccumSteps;
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
  const bool offPolicy = p.oldLogp != nullptr, withKl = p.refLogp != nullptr;
  parallelFor(rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t o = i * seq;
      const RowView r{p.logp + o, offPolicy ? p.oldLogp + o : nullptr, withKl ? p.refLogp + o : nullptr,
                      p.mask + o, p.dLogp + o, seq};
      const double adv = p.advantages[i], c = coefficient(stats[i].tokens);
      RowStats& row = stats[i];
      if (sequenceLevel) {
        if (withKl) sequenceLevelRow<true>(r, adv, c, clip, beta, row);
        else sequenceLevelRow<false>(r, adv, c, clip, beta, row);
      } else if (offPolicy) {
        if (withKl) tokenLevelRow<true, true>(r, adv, c, clip, beta, row);
        else tokenLevelRow<true, false>(r, adv, c, clip, beta, row);
      } else {
        if (withKl) tokenLevelRow<false, true>(r, adv, c, clip, beta, row);
        else tokenLevelRow<false, false>(r, adv, c, clip, beta, row);
      }
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
