// Cross-entropy over materialised logits on the GPU (kernels.h §10), matching
// src/cpu/cross_entropy.cpp: per row lse = max + log Σ e^(z − max) and nll = lse − z[target];
// the loss sums the NLLs of the counted rows in float64.
//
// Forward: one block per row streams the row once, each thread keeping online softmax statistics
// (max, Σ e^(z − max)) over its packs, merged across the block (reduce.cuh); the block's first
// thread forms lse and nll in float64 as the CPU does. A one-block kernel then sums the NLLs and
// counts the rows (float64), and one copy brings both to the host.
// Backward: one block per row writes dLogits = scale · e^(z − lse), minus scale at the target.
// Rows are read in packs of N elements (16 bytes when V and the pointers allow, else N = 1).
#include <algorithm>
#include <cmath>

#include "device_buffer.cuh"
#include "reduce.cuh"
#include "runtime.cuh"
#include "types.cuh"
#include "vec.cuh"

namespace rlhf::cuda {
namespace {

constexpr int64_t kMaxRowThreads = 256;
constexpr unsigned kSumThreads = 1024;

// Threads for a row of `packs` packs: up to one pack each, in whole warps, at most kMaxRowThreads.
unsigned rowThreads(int64_t packs) {
  return static_cast<unsigned>(std::min<int64_t>(kMaxRowThreads, (packs + 31) / 32 * 32));
}

// logits [n, vocab]; targets, nll, lse [n]. Block i handles row i; an ignored row writes zeros
// (the whole block leaves together, before any barrier).
template <typename D, int N>
__global__ void __launch_bounds__(kMaxRowThreads)
    crossEntropyKernel(const D* logits, const int32_t* targets, int64_t vocab, int32_t ignoreIndex, float* nll,
                       float* lse) {
  __shared__ SoftmaxStats scratch[32];
  const int64_t row = blockIdx.x;
  const int32_t target = targets[row];
  if (target == ignoreIndex) {
    if (threadIdx.x == 0) {
      nll[row] = 0.0f;
      lse[row] = 0.0f;
    }
    return;
  }
  const D* z = logits + row * vocab;
  SoftmaxStats stats = SoftmaxStats::empty();
  for (int64_t j = threadIdx.x * int64_t{N}; j < vocab; j += int64_t{blockDim.x} * N) {
    const Pack<D, N> v = loadPack<N>(z + j);
#pragma unroll
    for (int k = 0; k < N; ++k) stats.push(toFloat(v.v[k]));
  }
  stats = blockSoftmaxStats(stats, scratch);
  if (threadIdx.x == 0) {
    const double l = static_cast<double>(stats.max) + log(static_cast<double>(stats.sum));
    lse[row] = static_cast<float>(l);
    nll[row] = static_cast<float>(l - static_cast<double>(toFloat(z[target])));
  }
}

// out[0] = Σ nll over the rows whose target is not ignoreIndex, out[1] = their number, both float64
// (the count is exact below 2^53). One block; threads stride over the rows.
__global__ void __launch_bounds__(kSumThreads)
    sumNllKernel(const float* nll, const int32_t* targets, int64_t n, int32_t ignoreIndex, double* out) {
  __shared__ double scratch[32];
  double total = 0.0, count = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    if (targets[i] != ignoreIndex) {
      total += nll[i];
      count += 1.0;
    }
  }
  total = blockSum(total, scratch);
  count = blockSum(count, scratch);
  if (threadIdx.x == 0) {
    out[0] = total;
    out[1] = count;
  }
}

// dLogits [n, vocab] = scale · e^(z − lse) − scale · onehot(target); zeros on ignored rows, which
// are not read. The _rn intrinsics keep the CPU's roundings (no FMA).
template <typename D, int N>
__global__ void __launch_bounds__(kMaxRowThreads)
    crossEntropyBackwardKernel(const D* logits, const int32_t* targets, const float* lse, int64_t vocab,
                               int32_t ignoreIndex, float scale, D* dLogits) {
  const int64_t row = blockIdx.x;
  const int32_t target = targets[row];
  const bool ignored = target == ignoreIndex;
  const float l = ignored ? 0.0f : lse[row];
  const D* z = logits + row * vocab;
  D* d = dLogits + row * vocab;
  for (int64_t j = threadIdx.x * int64_t{N}; j < vocab; j += int64_t{blockDim.x} * N) {
    Pack<D, N> out;
    if (ignored) {
#pragma unroll
      for (int k = 0; k < N; ++k) out.v[k] = fromFloat<D>(0.0f);
    } else {
      const Pack<D, N> v = loadPack<N>(z + j);
#pragma unroll
      for (int k = 0; k < N; ++k) {
        float g = __fmul_rn(scale, expf(toFloat(v.v[k]) - l));
        if (j + k == target) g = __fsub_rn(g, scale);
        out.v[k] = fromFloat<D>(g);
      }
    }
    storePack<N>(d + j, out);
  }
}

}  // namespace

template <typename T>
void crossEntropy(const CrossEntropyArgsT<T>& p) {
  double sums[2] = {0.0, 0.0};  // Σ nll, count
  if (p.n > 0) {
    using D = DeviceType<T>;
    constexpr int kPack = kPack16<D>;
    const D* logits = devicePtr(p.logits);
    const unsigned rows = static_cast<unsigned>(p.n);
    if (p.vocab % kPack == 0 && allAligned(16, {logits})) {
      crossEntropyKernel<D, kPack><<<rows, rowThreads(p.vocab / kPack), 0, stream()>>>(logits, p.targets, p.vocab,
                                                                                      p.ignoreIndex, p.nll, p.lse);
    } else {
      crossEntropyKernel<D, 1><<<rows, rowThreads(p.vocab), 0, stream()>>>(logits, p.targets, p.vocab, p.ignoreIndex,
                                                                          p.nll, p.lse);
    }
    checkLaunch("crossEntropyKernel");
    DeviceBuffer<double> result(2);
    sumNllKernel<<<1, kSumThreads, 0, stream()>>>(p.nll, p.targets, p.n, p.ignoreIndex, result.data());
    checkLaunch("sumNllKernel");
    copyToHost(sums, result.data(), sizeof sums);
  }
  const int64_t count = static_cast<int64_t>(sums[1]);
  *p.count = count;
  *p.loss = p.sum ? sums[0] : sums[0] / static_cast<double>(std::max<int64_t>(count, 1));
}

template <typename T>
void crossEntropyBackward(const CrossEntropyBackwardArgsT<T>& p) {
  if (p.n == 0) return;
  // As the CPU: the mean's 1/count folded into the scale in float64, rounded once.
  const float scale =
      p.sum ? p.gradLoss : static_cast<float>(p.gradLoss / static_cast<double>(std::max<int64_t>(p.count, 1)));
  using D = DeviceType<T>;
  constexpr int kPack = kPack16<D>;
  const D* logits = devicePtr(p.logits);
  D* dLogits = devicePtr(p.dLogits);
  const unsigned rows = static_cast<unsigned>(p.n);
  if (p.vocab % kPack == 0 && allAligned(16, {logits, dLogits})) {
    crossEntropyBackwardKernel<D, kPack><<<rows, rowThreads(p.vocab / kPack), 0, stream()>>>(
        logits, p.targets, p.lse, p.vocab, p.ignoreIndex, scale, dLogits);
  } else {
    crossEntropyBackwardKernel<D, 1><<<rows, rowThreads(p.vocab), 0, stream()>>>(logits, p.targets, p.lse, p.vocab,
                                                                                p.ignoreIndex, scale, dLogits);
  }
  checkLaunch("crossEntropyBackwardKernel");
}

template void crossEntropy<float>(const CrossEntropyArgsT<float>&);
template void crossEntropy<bf16>(const CrossEntropyArgsT<bf16>&);
template void crossEntropyBackward<float>(const CrossEntropyBackwardArgsT<float>&);
template void crossEntropyBackward<bf16>(const CrossEntropyBackwardArgsT<bf16>&);

}  // namespace rlhf::cuda
