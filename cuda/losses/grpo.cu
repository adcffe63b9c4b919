// GRPO's clipped surrogate with the k3 KL penalty on the GPU, in float64 per token, with the
// formulas of the CPU kernel (src/cpu/losses/grpo_terms.h: surrogate, k3, aggregation coefficients,
// clip fractions, metrics). Inputs logp, oldLogp, refLogp, mask [B, T] and advantages [B] are
// device memory; dLogp [B, T] is written on the device; the loss and the metrics come back in one
// copy of 8 float64 at the end.
//
// Launches (row kernels: one block per row, threads striding over its T tokens, so every load and
// store is coalesced; rowThreads(T) threads, about 4 tokens each):
//   1. grpoRowStatsKernel  <<<B>>>   n_i = Σ_t M and, at sequence level off-policy, the row's
//                                    log importance weight → rowTokens, rowLogWeight [B]
//   2. sumRows<1>          <<<1>>>   N = Σ_i n_i (bnpo's normaliser, maskedTokens)
//   3. grpoTokensKernel    <<<B>>>   per token: surrogate, k3, gradient (written), clip flags; the
//                                    block's sums → rowOut [B, kRowValues] (row loss, Σ k3, clipped
//                                    counts or flags, the row's clip fractions)
//   4. grpoFinalizeKernel  <<<1>>>   one warp: Σ over the rows, nanmin / nanmax of the fractions
// Every sum has a fixed order (block trees, then the warp's strided sums), so results are
// deterministic. Row kernels 1 and 3 read the mask twice; the second read mostly hits L2.
#include <math_constants.h>

#include <algorithm>

#include "../../src/cpu/losses/grpo_terms.h"
#include "../device_buffer.cuh"
#include "loss_reduce.cuh"

namespace rlhf::cuda {
namespace {

using lossmath::GrpoAggregation;
using lossmath::GrpoClip;

// The register budget of the row kernels (__launch_bounds__) allows up to 512 threads a block.
constexpr unsigned kMaxRowThreads = 512;

// Threads for a row of `seq` tokens: about 4 tokens a thread (loads in flight without idle threads
// on short rows), a multiple of 32 in [64, kMaxRowThreads].
unsigned rowThreads(int64_t seq) {
  const int64_t warps = ((seq + 3) / 4 + 31) / 32;
  return static_cast<unsigned>(std::clamp<int64_t>(warps * 32, 64, kMaxRowThreads));
}

// rowOut's columns: the row's loss (c_i included), Σ_t M·k3, the low / high / region clipped
// counts (token level) or flags (sequence level), then the low and high clip fractions
// (lossmath::rowClipFraction, NaN for a skipped row).
constexpr int kRowSums = 5;
constexpr int kRowValues = kRowSums + 2;
// results: N, Σ loss, Σ kl, Σ low, Σ high, Σ region, low_min, high_max.
constexpr int kResults = 8;

template <bool kLogWeight>
__global__ void __launch_bounds__(kMaxRowThreads)
    grpoRowStatsKernel(int64_t seq, const float* __restrict__ mask, const float* __restrict__ logp,
                       const float* __restrict__ oldLogp, double* __restrict__ rowTokens,
                       double* __restrict__ rowLogWeight) {
  const int64_t base = blockIdx.x * seq;
  double v[2] = {0.0, 0.0};  // n_i, Σ_t M·(logp − old)
#pragma unroll 4
  for (int64_t t = threadIdx.x; t < seq; t += blockDim.x) {
    const float m = mask[base + t];
    if (kLogWeight) {
      const double logRatio = static_cast<double>(logp[base + t]) - oldLogp[base + t];  // loaded with the mask
      if (m != 0.0f) v[1] += logRatio;
    }
    v[0] += m;
  }
  blockSums(v);
  if (threadIdx.x == 0) {
    rowTokens[blockIdx.x] = v[0];
    rowLogWeight[blockIdx.x] = lossmath::sequenceLogWeight(v[1], v[0]);
  }
}

// What every token block shares.
struct GrpoTokenSettings {
  int64_t seq;
  GrpoClip clip;
  double beta;
  GrpoAggregation aggregation;  // its totalTokens is read from the device (*totalTokens)
};

// kSequence: one surrogate per row (GSPO) from its log weight; else one per token, ρ = e^{logp −
// old} off-policy (kOffPolicy) or 1. kKl: the β·k3 term (refLogp present).
template <bool kSequence, bool kOffPolicy, bool kKl>
__global__ void __launch_bounds__(kMaxRowThreads)
    grpoTokensKernel(const GrpoTokenSettings s, const float* __restrict__ logp, const float* __restrict__ oldLogp,
                     const float* __restrict__ refLogp, const float* __restrict__ mask,
                     const float* __restrict__ advantages, const double* __restrict__ rowTokens,
                     const double* __restrict__ rowLogWeight, const double* __restrict__ totalTokens,
                     float* __restrict__ dLogp, double* __restrict__ rowOut) {
  const int64_t row = blockIdx.x;
  const int64_t base = row * s.seq;
  const double tokens = rowTokens[row], adv = advantages[row];
  GrpoAggregation aggregation = s.aggregation;
  aggregation.totalTokens = *totalTokens;
  const double c = lossmath::grpoCoefficient(aggregation, tokens);
  lossmath::SequenceSurrogate q{};
  if (kSequence) q = lossmath::sequenceSurrogate(rowLogWeight[row], tokens, adv, s.clip);

  // Σ token losses (token level), Σ k3, low / high / region clipped counts (token level).
  double v[kRowSums] = {};
#pragma unroll 4
  for (int64_t t = threadIdx.x; t < s.seq; t += blockDim.x) {
    const int64_t i = base + t;
    // Every input of the token is loaded before the mask test: one memory round trip a token.
    const float m = mask[i];
    const double lp = logp[i];  // (unused, and not loaded, on-policy without KL at token level)
    const float old = kOffPolicy ? oldLogp[i] : 0.0f;
    const float ref = kKl ? refLogp[i] : 0.0f;
    if (m == 0.0f) {
      dLogp[i] = 0.0f;
      continue;
    }
    lossmath::K3 kl{};
    if (kKl) {
      kl = lossmath::k3(ref, lp);
      v[1] += kl.value;
    }
    double grad;
    if (kSequence) {
      grad = q.tokenGrad;
    } else {
      const lossmath::Surrogate sg = lossmath::surrogate(kOffPolicy ? exp(lp - old) : 1.0, adv, s.clip);
      v[0] += kKl ? sg.loss + s.beta * kl.value : sg.loss;
      grad = sg.dLogRatio;
      v[2] += sg.lowClipped;
      v[3] += sg.highClipped;
      v[4] += sg.lowClipped || sg.highClipped;
    }
    if (kKl) grad += s.beta * kl.dLogp;
    dLogp[i] = static_cast<float>(c * grad);
  }
  blockSums(v);
  if (threadIdx.x == 0) {
    double loss, low, high, region;
    if (kSequence) {
      loss = lossmath::sequenceRowLoss(c, q, tokens, s.beta, v[1]);
      low = q.s.lowClipped;
      high = q.s.highClipped;
      region = q.s.lowClipped || q.s.highClipped;
    } else {
      loss = c * v[0];
      low = v[2];
      high = v[3];
      region = v[4];
    }
    double* out = rowOut + row * kRowValues;
    out[0] = loss;
    out[1] = v[1];
    out[2] = low;
    out[3] = high;
    out[4] = region;
    out[5] = lossmath::rowClipFraction(low, tokens, kSequence);
    out[6] = lossmath::rowClipFraction(high, tokens, kSequence);
  }
}

// results[1..7] from rowOut [rows, kRowValues]: one warp, lane l over rows l, l + 32, ...
__global__ void __launch_bounds__(32) grpoFinalizeKernel(const double* rowOut, int64_t rows, double* results) {
  double sums[kRowSums];
  losses::warpColumnSums(rowOut, rows, kRowValues, sums);
  double lowMin = CUDART_NAN, highMax = CUDART_NAN;
  for (int64_t r = threadIdx.x; r < rows; r += 32) {
    lowMin = fmin(lowMin, rowOut[r * kRowValues + kRowSums]);
    highMax = fmax(highMax, rowOut[r * kRowValues + kRowSums + 1]);
  }
  lowMin = warpMinIgnoringNan(lowMin);
  highMax = warpMaxIgnoringNan(highMax);
  if (threadIdx.x == 0) {
#pragma unroll
    for (int k = 0; k < kRowSums; ++k) results[1 + k] = sums[k];
    results[6] = lowMin;
    results[7] = highMax;
  }
}

// The device buffers of one call.
struct GrpoScratch {
  const double* rowTokens;
  const double* rowLogWeight;
  const double* totalTokens;
  double* rowOut;
};

template <bool kSequence, bool kOffPolicy, bool kKl>
void launchTokens(const GrpoLossArgs& p, unsigned threads, const GrpoTokenSettings& s, const GrpoScratch& w) {
  grpoTokensKernel<kSequence, kOffPolicy, kKl><<<static_cast<unsigned>(p.rows), threads, 0, stream()>>>(
      s, p.logp, p.oldLogp, p.refLogp, p.mask, p.advantages, w.rowTokens, w.rowLogWeight, w.totalTokens, p.dLogp,
      w.rowOut);
  checkLaunch("grpoTokensKernel");
}

}  // namespace

void grpoLoss(const GrpoLossArgs& p) {
  const int64_t rows = p.rows;
  const bool sequenceLevel = p.importanceLevel == ImportanceLevel::Sequence;
  const bool offPolicy = p.oldLogp != nullptr, withKl = p.refLogp != nullptr;
  const unsigned threads = rowThreads(p.seq);

  // rowTokens [B], rowLogWeight [B], rowOut [B, kRowValues], results [kResults].
  DeviceBuffer<double> scratch(static_cast<size_t>(rows) * (2 + kRowValues) + kResults);
  double* rowTokens = scratch.data();
  double* rowLogWeight = rowTokens + rows;
  double* rowOut = rowLogWeight + rows;
  double* results = rowOut + rows * kRowValues;

  const unsigned grid = static_cast<unsigned>(rows);
  if (sequenceLevel && offPolicy) {
    grpoRowStatsKernel<true><<<grid, threads, 0, stream()>>>(p.seq, p.mask, p.logp, p.oldLogp, rowTokens,
                                                             rowLogWeight);
  } else {
    grpoRowStatsKernel<false><<<grid, threads, 0, stream()>>>(p.seq, p.mask, p.logp, p.oldLogp, rowTokens,
                                                              rowLogWeight);
  }
  checkLaunch("grpoRowStatsKernel");
  losses::sumRows<1>(rowTokens, rows, results);

  const GrpoTokenSettings s{p.seq, lossmath::grpoClip(p), p.beta, lossmath::grpoAggregation(p, 0.0)};
  const GrpoScratch w{rowTokens, rowLogWeight, results, rowOut};
  // At sequence level the row's log weight already holds the off-policy ratio.
  if (sequenceLevel) {
    if (withKl) launchTokens<true, false, true>(p, threads, s, w);
    else launchTokens<true, false, false>(p, threads, s, w);
  } else if (offPolicy) {
    if (withKl) launchTokens<false, true, true>(p, threads, s, w);
    else launchTokens<false, true, false>(p, threads, s, w);
  } else {
    if (withKl) launchTokens<false, false, true>(p, threads, s, w);
    else launchTokens<false, false, false>(p, threads, s, w);
  }
  grpoFinalizeKernel<<<1, 32, 0, stream()>>>(rowOut, rows, results);
  checkLaunch("grpoFinalizeKernel");

  double host[kResults];
  copyToHost(host, results, sizeof host);
  *p.loss = host[1];
  if (p.metrics) {
    *p.metrics = lossmath::grpoMetrics(host[2], host[3], host[4], host[5], host[6], host[7], host[0],
                                       static_cast<double>(rows), sequenceLevel, withKl);
  }
}

}  // namespace rlhf::cuda
