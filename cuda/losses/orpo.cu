// ORPO on the GPU, in float64, with the per-pair math of the CPU kernel
// (src/cpu/losses/orpo_terms.h). One thread per pair, kLossThreads per block: each writes its two
// gradients and contributes to the block's sums; sumRows adds the blocks up and one copy brings the
// sums back.
#include "../../src/cpu/losses/loss_math.h"
#include "../../src/cpu/losses/orpo_terms.h"
#include "loss_reduce.cuh"

namespace rlhf::cuda {
namespace {

using losses::kLossThreads;

// Σ logσ(log_odds), the PairMetrics terms, Σ log_odds.
constexpr int kOrpoSums = 2 + losses::kPairMetricsValues;

__global__ void __launch_bounds__(kLossThreads)
    orpoKernel(int64_t pairs, const float* policyChosen, const float* policyRejected, const float* chosenLengths,
               const float* rejectedLengths, double beta, double invPairs, float* dChosen, float* dRejected,
               double* partials) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  double v[kOrpoSums] = {};
  if (i < pairs) {
    const lossmath::OrpoPairTerm t =
        lossmath::orpoPairTerm(policyChosen[i], policyRejected[i], lossmath::clampedLength(chosenLengths, i),
                               lossmath::clampedLength(rejectedLengths, i), beta, invPairs);
    dChosen[i] = static_cast<float>(t.dChosen);
    dRejected[i] = static_cast<float>(t.dRejected);
    v[0] = t.logSigmoidOdds;
    losses::storePairMetrics(lossmath::pairMetricsTerm(beta * t.a, beta * t.b, t.a, t.b), v + 1);
    v[kOrpoSums - 1] = t.logOdds;
  }
  losses::writeBlockSums(v, partials + blockIdx.x * static_cast<int64_t>(kOrpoSums));
}

}  // namespace

void orpoLoss(const OrpoLossArgs& p) {
  const double beta = p.beta;
  const double invPairs = 1.0 / static_cast<double>(p.pairs);
  const unsigned blocks = blocksFor(p.pairs, kLossThreads);
  double sums[kOrpoSums];
  losses::reduceToHost(blocks, sums, [&](double* partials) {
    orpoKernel<<<blocks, kLossThreads, 0, stream()>>>(p.pairs, p.policyChosen, p.policyRejected, p.chosenLengths,
                                                      p.rejectedLengths, beta, invPairs, p.dPolicyChosen,
                                                      p.dPolicyRejected, partials);
    checkLaunch("orpoKernel");
  });
  *p.loss = lossmath::orpoTotalLoss(p.nll, beta, sums[0], invPairs);
  if (p.metrics) {
    *p.metrics = {lossmath::pairMetricsMean(losses::loadPairMetrics(sums + 1), p.pairs), sums[0] * invPairs,
                  sums[kOrpoSums - 1] * invPairs, p.nll};
  }
}

}  // namespace rlhf::cuda
