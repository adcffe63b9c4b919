// KTO on the GPU, in float64, with the per-row math of the CPU kernel (src/cpu/losses/kto_terms.h).
// One thread per row, kLossThreads per block: each writes its gradient and contributes its loss and
// metric sums to the block's partials; sumRows adds the blocks up and one copy brings the sums back.
#include "../../src/cpu/losses/kto_terms.h"
#include "loss_reduce.cuh"

namespace rlhf::cuda {
namespace {

using losses::kLossThreads;

// The loss, then KtoMetrics' sums and counts (as float64, exact below 2^53).
constexpr int kKtoSums = 7;

__global__ void __launch_bounds__(kLossThreads)
    ktoKernel(int64_t rows, const float* policyLogps, const float* refLogps, const int32_t* desirable,
              lossmath::KtoSettings s, double invRows, float* dPolicy, double* partials) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  double v[kKtoSums] = {};
  if (i < rows) {
    const double logp = policyLogps[i];
    const double r = logp - refLogps[i];
    const bool isDesirable = desirable[i] != 0;
    const lossmath::KtoRowTerm row = lossmath::ktoRowTerm(s, isDesirable, r);
    dPolicy[i] = static_cast<float>(row.grad * invRows);
    v[0] = row.loss;
    // rewards/chosen, rewards/rejected, logps/chosen, logps/rejected sums; chosen and rejected counts
    // (constant indices: v stays in registers).
    if (isDesirable) {
      v[1] = s.beta * r;
      v[3] = logp;
      v[5] = 1.0;
    } else {
      v[2] = s.beta * r;
      v[4] = logp;
      v[6] = 1.0;
    }
  }
  losses::writeBlockSums(v, partials + blockIdx.x * static_cast<int64_t>(kKtoSums));
}

}  // namespace

void ktoLoss(const KtoLossArgs& p) {
  const lossmath::KtoSettings s = lossmath::ktoSettings(p);
  const double invRows = 1.0 / static_cast<double>(p.rows);
  const unsigned blocks = blocksFor(p.rows, kLossThreads);
  double sums[kKtoSums];
  losses::reduceToHost(blocks, sums, [&](double* partials) {
    ktoKernel<<<blocks, kLossThreads, 0, stream()>>>(p.rows, p.policyLogps, p.refLogps, p.desirable, s, invRows,
                                                     p.dPolicy, partials);
    checkLaunch("ktoKernel");
  });
  *p.loss = sums[0] * invRows;
  if (p.metrics) {
    *p.metrics = {sums[1], sums[2], sums[3], sums[4], static_cast<int64_t>(sums[5]), static_cast<int64_t>(sums[6])};
  }
}

}  // namespace rlhf::cuda
