// GRPO's clipped surrogate with the k3 KL penalty (TRL 1.x `GRPOTrainer._compute_loss`,
// trl-losses.md §6.7–6.10), in float64 per token, threaded over rows. The formulas (surrogate,
// k3, aggregation coefficients, clip fractions, metrics) are in grpo_terms.h, shared with the CUDA
// kernel.
#include <algorithm>
#include <cmath>

#include "../../kernels.h"
#include "../../memory.h"
#include "../parallel.h"
#include "grpo_terms.h"

namespace rlhf::cpu {
namespace {

using lossmath::GrpoClip;
using lossmath::Surrogate;

// Per-row sums; `loss` is the row's Σ_t M·ℓ·c_i.
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
void tokenLevelRow(const RowView& r, double adv, double c, const GrpoClip& clip, double beta, RowStats& row) {
  double loss = 0.0, kl = 0.0, low = 0.0, high = 0.0, region = 0.0;
  for (int64_t t = 0; t < r.seq; ++t) {
    if (r.mask[t] == 0.0f) {
      r.dLogp[t] = 0.0f;
      continue;
    }
    const double logp = r.logp[t];
    const Surrogate s = lossmath::surrogate(kOffPolicy ? std::exp(logp - r.old[t]) : 1.0, adv, clip);
    double tokenLoss = s.loss, grad = s.dLogRatio;
    low += s.lowClipped;
    high += s.highClipped;
    region += s.lowClipped || s.highClipped;
    if (kKl) {
      const lossmath::K3 k = lossmath::k3(r.ref[t], logp);
      kl += k.value;
      tokenLoss += beta * k.value;
      grad += beta * k.dLogp;
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

// Sequence level (GSPO): one surrogate per row, shared by its n_i tokens. The KL stays per token.
template <bool kKl>
void sequenceLevelRow(const RowView& r, double adv, double c, const GrpoClip& clip, double beta, RowStats& row) {
  const lossmath::SequenceSurrogate q = lossmath::sequenceSurrogate(row.logWeight, row.tokens, adv, clip);
  double kl = 0.0;
  for (int64_t t = 0; t < r.seq; ++t) {
    if (r.mask[t] == 0.0f) {
      r.dLogp[t] = 0.0f;
      continue;
    }
    double grad = q.tokenGrad;
    if (kKl) {
      const lossmath::K3 k = lossmath::k3(r.ref[t], r.logp[t]);
      kl += k.value;
      grad += beta * k.dLogp;
    }
    r.dLogp[t] = static_cast<float>(c * grad);
  }
  row.loss = lossmath::sequenceRowLoss(c, q, row.tokens, beta, kl);
  row.kl = kl;
  row.low = q.s.lowClipped;
  row.high = q.s.highClipped;
  row.region = q.s.lowClipped || q.s.highClipped;
}

}  // namespace

void grpoLoss(const GrpoLossArgs& p) {
  const int64_t rows = p.rows, seq = p.seq;
  const bool sequenceLevel = p.importanceLevel == ImportanceLevel::Sequence;
  const GrpoClip clip = lossmath::grpoClip(p);
  const double beta = p.beta;
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
      stats[i] = {tokens, lossmath::sequenceLogWeight(logRatioSum, tokens), 0.0, 0.0, 0.0, 0.0, 0.0};
    }
  });
  double totalTokens = 0.0;
  for (int64_t i = 0; i < rows; ++i) totalTokens += stats[i].tokens;
  const lossmath::GrpoAggregation aggregation = lossmath::grpoAggregation(p, totalTokens);

  // Pass 2: per-token loss, gradient and clip statistics.
  const bool offPolicy = p.oldLogp != nullptr, withKl = p.refLogp != nullptr;
  parallelFor(rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t o = i * seq;
      const RowView r{p.logp + o, offPolicy ? p.oldLogp + o : nullptr, withKl ? p.refLogp + o : nullptr,
                      p.mask + o, p.dLogp + o, seq};
      const double adv = p.advantages[i], c = lossmath::grpoCoefficient(aggregation, stats[i].tokens);
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
  double lowMin = std::nan(""), highMax = lowMin;
  for (int64_t i = 0; i < rows; ++i) {
    const RowStats& row = stats[i];
    loss += row.loss;
    kl += row.kl;
    low += row.low;
    high += row.high;
    region += row.region;
    lowMin = std::fmin(lowMin, lossmath::rowClipFraction(row.low, row.tokens, sequenceLevel));
    highMax = std::fmax(highMax, lossmath::rowClipFraction(row.high, row.tokens, sequenceLevel));
  }
  *p.loss = loss;
  if (p.metrics) {
    *p.metrics = lossmath::grpoMetrics(kl, low, high, region, lowMin, highMax, totalTokens, static_cast<double>(rows),
                                       sequenceLevel, withKl);
  }
}

}  // namespace rlhf::cpu
