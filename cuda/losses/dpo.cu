// DPO and its variants on the GPU, in float64, with the per-pair math of the CPU kernel
// (src/cpu/losses/dpo_terms.h). Inputs [P] are device memory; the loss-type list is copied into the
// kernel's arguments (duplicate types merged, sft taken out), the loss and metrics come back in one
// copy at the end.
//
// Launches (one thread per pair, kLossThreads per block, B = ⌈P / kLossThreads⌉ blocks):
//   sft only: dpoSftSumsKernel → [B, 3] partials of (Σ S_c, Σ n_c, Σ pw); sumRows → 3 sums on the
//             device, which every pair's sft gradient needs;
//   dpoPairKernel: each pair's loss over the type list, its two gradients (written), its metric
//             terms; [B, 7] partials; sumRows → 7 sums; then one copy of the sums to the host.
#include "../../src/cpu/losses/dpo_terms.h"
#include "../../src/cpu/losses/loss_math.h"
#include "../device_buffer.cuh"
#include "loss_reduce.cuh"

namespace rlhf::cuda {
namespace {

using losses::kLossThreads;

// DpoLossType has 13 values, so a merged list never has more entries.
constexpr int kMaxLossTypes = static_cast<int>(DpoLossType::Sft) + 1;
constexpr int kSftSums = 3;                                // Σ S_c, Σ n_c, Σ pw
constexpr int kPairSums = 1 + losses::kPairMetricsValues;  // the weighted losses, the metrics

struct DpoKernelArgs {
  int64_t pairs;
  const float* policyChosen;
  const float* policyRejected;
  const float* refChosen;
  const float* refRejected;
  const float* chosenLengths;    // null unless a type needs them
  const float* rejectedLengths;  // idem
  const float* pairWeights;      // or null
  lossmath::DpoSettings settings;
  DpoLossType types[kMaxLossTypes];  // the list without sft, each type once
  double weights[kMaxLossTypes];     // its weights (duplicates summed)
  int32_t numTypes;
  double invPairs;
  double sftWeight;       // Σ of the sft entries' weights
  const double* sftSums;  // [kSftSums] on the device, or null when sftWeight == 0
  float* dChosen;         // [P]
  float* dRejected;       // [P]
  double* partials;       // [B, kPairSums]
};

__global__ void __launch_bounds__(kLossThreads)
    dpoSftSumsKernel(int64_t pairs, const float* policyChosen, const float* chosenLengths, const float* pairWeights,
                     double* partials) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  double v[kSftSums] = {0.0, 0.0, 0.0};
  if (i < pairs) {
    v[0] = policyChosen[i];
    v[1] = chosenLengths[i];
    v[2] = pairWeights ? pairWeights[i] : 1.0;
  }
  losses::writeBlockSums(v, partials + blockIdx.x * static_cast<int64_t>(kSftSums));
}

// The list lives in the kernel's parameter space (__grid_constant__), indexed without a local copy.
__global__ void __launch_bounds__(kLossThreads) dpoPairKernel(const __grid_constant__ DpoKernelArgs a) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  double v[kPairSums] = {};
  if (i < a.pairs) {
    double dChosen = 0.0, dRejected = 0.0;
    if (a.sftSums) {
      dChosen = lossmath::dpoSftTerm(a.sftWeight, a.sftSums[0], a.sftSums[1], a.sftSums[2], a.invPairs).grad;
    }
    const double uc = static_cast<double>(a.policyChosen[i]) - a.refChosen[i];
    const double ur = static_cast<double>(a.policyRejected[i]) - a.refRejected[i];
    const double pairScale = (a.pairWeights ? a.pairWeights[i] : 1.0) * a.invPairs;
    lossmath::addDpoPair(a.settings, a.types, a.weights, a.numTypes, uc, ur,
                         lossmath::clampedLength(a.chosenLengths, i), lossmath::clampedLength(a.rejectedLengths, i),
                         pairScale, v[0], dChosen, dRejected);
    a.dChosen[i] = static_cast<float>(dChosen);
    a.dRejected[i] = static_cast<float>(dRejected);
    // Metrics use the reverse-KL rewards β·u whatever the loss type or f-divergence.
    const double beta = a.settings.beta;
    losses::storePairMetrics(
        lossmath::pairMetricsTerm(beta * uc, beta * ur, a.policyChosen[i], a.policyRejected[i]), v + 1);
  }
  losses::writeBlockSums(v, a.partials + blockIdx.x * static_cast<int64_t>(kPairSums));
}

}  // namespace

void dpoLoss(const DpoLossArgs& p) {
  DpoKernelArgs a{};
  a.pairs = p.pairs;
  a.policyChosen = p.policyChosen;
  a.policyRejected = p.policyRejected;
  a.refChosen = p.refChosen;
  a.refRejected = p.refRejected;
  a.chosenLengths = p.chosenLengths;
  a.rejectedLengths = p.rejectedLengths;
  a.pairWeights = p.pairWeights;
  a.settings = {p.fDivergence, p.fAlphaCoef, p.beta, p.labelSmoothing, p.discopopTau};
  a.invPairs = 1.0 / static_cast<double>(p.pairs);
  a.dChosen = p.dPolicyChosen;
  a.dRejected = p.dPolicyRejected;
  // The list, host memory: sft's weights add up (as on the CPU); any other type repeated in the list
  // gets one entry with the summed weight, so at most kMaxLossTypes entries remain.
  for (int32_t k = 0; k < p.numLossTypes; ++k) {
    const DpoLossType type = p.lossTypes[k];
    if (type == DpoLossType::Sft) {
      a.sftWeight += p.lossWeights[k];
      continue;
    }
    int32_t j = 0;
    while (j < a.numTypes && a.types[j] != type) ++j;
    if (j == a.numTypes) a.types[a.numTypes++] = type;
    a.weights[j] += p.lossWeights[k];  // the weights start at 0 (a{})
  }
  const bool sft = a.sftWeight != 0.0;

  const unsigned blocks = blocksFor(p.pairs, kLossThreads);
  // partials [blocks, kPairSums] (the sft pass uses the first blocks · kSftSums), then the sums:
  // kPairSums for the pairs and kSftSums for sft.
  DeviceBuffer<double> scratch(static_cast<size_t>(blocks) * kPairSums + kPairSums + kSftSums);
  a.partials = scratch.data();
  double* sums = a.partials + static_cast<size_t>(blocks) * kPairSums;
  if (sft) {
    dpoSftSumsKernel<<<blocks, kLossThreads, 0, stream()>>>(p.pairs, p.policyChosen, p.chosenLengths, p.pairWeights,
                                                            a.partials);
    checkLaunch("dpoSftSumsKernel");
    losses::sumRows<kSftSums>(a.partials, blocks, sums + kPairSums);
    a.sftSums = sums + kPairSums;
  }
  dpoPairKernel<<<blocks, kLossThreads, 0, stream()>>>(a);
  checkLaunch("dpoPairKernel");
  losses::sumRows<kPairSums>(a.partials, blocks, sums);

  double host[kPairSums + kSftSums];
  copyToHost(host, sums, (sft ? kPairSums + kSftSums : kPairSums) * sizeof(double));
  const lossmath::SftTerm sftTerm =
      sft ? lossmath::dpoSftTerm(a.sftWeight, host[kPairSums], host[kPairSums + 1], host[kPairSums + 2], a.invPairs)
          : lossmath::SftTerm{0.0, 0.0};
  *p.loss = sftTerm.loss + host[0];
  if (p.metrics) *p.metrics = lossmath::pairMetricsMean(losses::loadPairMetrics(host + 1), p.pairs);
}

}  // namespace rlhf::cuda
