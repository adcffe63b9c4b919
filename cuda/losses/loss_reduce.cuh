// The batch reductions of the loss kernels, in float64 and deterministic: each block of a loss
// kernel reduces its threads' K values with blockSums (reduce.cuh) and writes one row of a
// [blocks, K] partials matrix; sumRows then adds the rows up in a fixed order. The pair losses
// (DPO, KTO, ORPO, CPO) map one thread to one pair or row, kLossThreads to a block.
#pragma once

#include <cstdint>

#include "../../src/kernels.h"
#include "../device_buffer.cuh"
#include "../reduce.cuh"
#include "../runtime.cuh"

namespace rlhf::cuda::losses {

constexpr unsigned kLossThreads = 256;

// Σ over the block of each thread's K values; thread 0 writes them to out[0..K).
template <int K>
__device__ __forceinline__ void writeBlockSums(double (&v)[K], double* out) {
  blockSums(v);
  if (threadIdx.x == 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) out[k] = v[k];
  }
}

// Lane l of one warp accumulates rows l, l + 32, ... of columns [0, K) of a [rows, stride] matrix;
// the warp's shuffle tree then sums the lanes (fixed order). The sums are valid in every lane.
template <int K>
__device__ __forceinline__ void warpColumnSums(const double* x, int64_t rows, int64_t stride, double (&sums)[K]) {
  const unsigned lane = threadIdx.x & 31u;
#pragma unroll
  for (int k = 0; k < K; ++k) sums[k] = 0.0;
  for (int64_t r = lane; r < rows; r += 32) {
#pragma unroll
    for (int k = 0; k < K; ++k) sums[k] += x[r * stride + k];
  }
#pragma unroll
  for (int k = 0; k < K; ++k) sums[k] = warpSum(sums[k]);
}

// out[k] = Σ_r x[r·K + k] over a [rows, K] matrix: one warp (rows are blocks of a loss kernel, or
// the B rows of GRPO: a few thousand at most).
template <int K>
__global__ void __launch_bounds__(32) sumRowsKernel(const double* x, int64_t rows, double* out) {
  double sums[K];
  warpColumnSums(x, rows, K, sums);
  if (threadIdx.x == 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) out[k] = sums[k];
  }
}

template <int K>
void sumRows(const double* x, int64_t rows, double* out) {
  sumRowsKernel<K><<<1, 32, 0, stream()>>>(x, rows, out);
  checkLaunch("sumRowsKernel");
}

// Runs launch(partials), which enqueues a kernel of `blocks` blocks writing a [blocks, K] partials
// matrix, sums its rows and copies the K sums to `host` (one copy, which waits for the stream).
template <int K, typename Launch>
void reduceToHost(unsigned blocks, double (&host)[K], Launch launch) {
  DeviceBuffer<double> scratch(static_cast<size_t>(blocks) * K + K);
  double* sums = scratch.data() + static_cast<size_t>(blocks) * K;
  launch(scratch.data());
  sumRows<K>(scratch.data(), blocks, sums);
  copyToHost(host, sums, sizeof host);
}

// The six PairMetrics terms as consecutive reduction values, and back.
constexpr int kPairMetricsValues = 6;
__device__ __forceinline__ void storePairMetrics(const PairMetrics& m, double* v) {
  v[0] = m.rewardsChosen;
  v[1] = m.rewardsRejected;
  v[2] = m.rewardsAccuracies;
  v[3] = m.rewardsMargins;
  v[4] = m.logpsChosen;
  v[5] = m.logpsRejected;
}
inline PairMetrics loadPairMetrics(const double* v) { return {v[0], v[1], v[2], v[3], v[4], v[5]}; }

}  // namespace rlhf::cuda::losses
