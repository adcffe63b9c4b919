// CPO / SimPO / AlphaPO on the GPU, in float64, with the per-pair math of the CPU kernel
// (src/cpu/losses/cpo_terms.h). One thread per pair, kLossThreads per block: each writes its two
// gradients and contributes to the block's sums; sumRows adds the blocks up and one copy brings the
// sums back.
#include "../../src/cpu/losses/cpo_terms.h"
#include "../../src/cpu/losses/loss_math.h"
#include "loss_reduce.cuh"

namespace rlhf::cuda {
namespace {

using losses::kLossThreads;

// Σ L_pref, then the PairMetrics terms.
constexpr int kCpoSums = 1 + losses::kPairMetricsValues;

// chosenLengths / rejectedLengths are null unless the scores are averaged (ipo, simpo).
__global__ void __launch_bounds__(kLossThreads)
    cpoKernel(int64_t pairs, const float* policyChosen, const float* policyRejected, const float* chosenLengths,
              const float* rejectedLengths, lossmath::CpoSettings s, double invPairs, float* dChosen,
              float* dRejected, double* partials) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  double v[kCpoSums] = {};
  if (i < pairs) {
    const lossmath::CpoPairTerm t =
        lossmath::cpoPairTerm(s, policyChosen[i], policyRejected[i], lossmath::clampedLength(chosenLengths, i),
                              lossmath::clampedLength(rejectedLengths, i), invPairs);
    dChosen[i] = static_cast<float>(t.dChosen);
    dRejected[i] = static_cast<float>(t.dRejected);
    v[0] = t.loss;
    losses::storePairMetrics(lossmath::pairMetricsTerm(s.beta * t.rewardChosen, s.beta * t.rewardRejected, t.xc, t.xr),
                             v + 1);
  }
  losses::writeBlockSums(v, partials + blockIdx.x * static_cast<int64_t>(kCpoSums));
}

}  // namespace

void cpoLoss(const CpoLossArgs& p) {
  const lossmath::CpoSettings s = lossmath::cpoSettings(p);
  const float* chosenLengths = s.averaged ? p.chosenLengths : nullptr;
  const float* rejectedLengths = s.averaged ? p.rejectedLengths : nullptr;
  const double invPairs = 1.0 / static_cast<double>(p.pairs);
  const unsigned blocks = blocksFor(p.pairs, kLossThreads);
  double sums[kCpoSums];
  losses::reduceToHost(blocks, sums, [&](double* partials) {
    cpoKernel<<<blocks, kLossThreads, 0, stream()>>>(p.pairs, p.policyChosen, p.policyRejected, chosenLengths,
                                                     rejectedLengths, s, invPairs, p.dPolicyChosen, p.dPolicyRejected,
                                                     partials);
    checkLaunch("cpoKernel");
  });
  *p.loss = lossmath::cpoTotalLoss(sums[0], invPairs, p.cpoAlpha, p.nll);
  if (p.metrics) *p.metrics = {lossmath::pairMetricsMean(losses::loadPairMetrics(sums + 1), p.pairs), p.nll};
}

}  // namespace rlhf::cuda
