// RMSNorm on the GPU: y = w · (x · rstd), rstd = 1 / sqrt(mean(x²) + eps) over rows of length D,
// and its backward. Same formulas and float32 operation order as src/cpu/rmsnorm.cpp; the row sums
// are float32 (per-thread partial sums, then a shuffle tree) where the CPU sums in float64.
//
// Mapping: a row is owned by one warp when it is short (≤ kMaxWarpRowPacks packs; 8 rows per block)
// or by one block when long (64–512 threads), the owner's threads striding over the row in packs of
// N elements (16 bytes when D and the pointers allow, else N = 1). Every thread sees the same
// columns in every row, which the backward's dWeight accumulation relies on.
//
// dWeight = Σ_rows dY·x·rstd is a column sum over all rows. The backward runs a persistent grid of
// "slots" (a warp or a block each, at most 4 blocks per SM) that walk the rows; since a thread owns
// the same columns in every row, it sums their contributions in registers, with no atomics and no
// synchronisation. Each slot then stores its sums as one row of a float32 scratch [slots, D], which
// a second kernel adds up, slot by slot in float64, into dWeight. Chosen over atomics on dWeight
// because every row would hit the same D addresses (heavy contention) and the result would depend
// on timing; here it depends only on the shape and the card's SM count.
#include <algorithm>
#include <cmath>

#include "device_buffer.cuh"
#include "reduce.cuh"
#include "runtime.cuh"
#include "types.cuh"
#include "vec.cuh"

namespace rlhf::cuda {
namespace {

constexpr int64_t kMaxWarpRowPacks = 128;  // up to 4 packs per lane (kRegisterPacks)
constexpr unsigned kWarpRowsPerBlock = 8;
constexpr int64_t kMaxBlockThreads = 512;
constexpr int kMaxSlotBlocksPerSm = 4;
// Packs per thread whose dW sums the backward keeps in registers; rowGeometry gives every thread at
// most this many packs for rows up to kRegisterPacks · kMaxBlockThreads packs (D = 16384 in bf16,
// 8192 in float32).
constexpr int kRegisterPacks = 4;

struct RowGeometry {
  unsigned threadsPerRow;  // blockDim.x: 32 (a warp per row) or a multiple of 32
  unsigned rowsPerBlock;   // blockDim.y: kWarpRowsPerBlock with a warp per row, else 1
};

RowGeometry rowGeometry(int64_t packs) {
  if (packs <= kMaxWarpRowPacks) return {32, kWarpRowsPerBlock};
  // At most kRegisterPacks packs per thread (a few independent 16-byte loads in flight each).
  const int64_t threads =
      std::clamp<int64_t>((packs + kRegisterPacks * 32 - 1) / (kRegisterPacks * 32) * 32, 64, kMaxBlockThreads);
  return {static_cast<unsigned>(threads), 1};
}

// Σ v over the threads that own one row: the warp (blockDim.x == 32), or the whole block (then
// blockDim.y == 1 and every thread of the block must call it).
__device__ __forceinline__ float rowSum(float v, float* scratch) {
  return blockDim.x == 32 ? warpSum(v) : blockSum(v, scratch);
}

// x, y [rows, dim]; weight [dim]; rstd [rows]. Block (threadsPerRow, rowsPerBlock), row =
// blockIdx.x · blockDim.y + threadIdx.y. x is read twice (sum of squares, then y); the second read
// hits the cache.
template <typename D, int N>
__global__ void __launch_bounds__(kMaxBlockThreads)
    rmsNormKernel(const D* x, const D* weight, D* y, float* rstd, int64_t rows, int64_t dim, float eps) {
  __shared__ float scratch[32];
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (row >= rows) return;  // only whole warps of a warp-per-row block leave here
  const D* xr = x + row * dim;
  D* yr = y + row * dim;
  const int64_t first = threadIdx.x * int64_t{N}, stride = int64_t{blockDim.x} * N;
  float sumSquares = 0.0f;
  for (int64_t j = first; j < dim; j += stride) {
    const Pack<D, N> xv = loadPack<N>(xr + j);
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const float v = toFloat(xv.v[k]);
      sumSquares += v * v;
    }
  }
  sumSquares = rowSum(sumSquares, scratch);
  // As the CPU: 1 / sqrt(mean + eps) in float64, rounded once.
  const float r = static_cast<float>(1.0 / sqrt(static_cast<double>(sumSquares) / static_cast<double>(dim) +
                                                static_cast<double>(eps)));
  if (threadIdx.x == 0) rstd[row] = r;
  for (int64_t j = first; j < dim; j += stride) {
    const Pack<D, N> xv = loadPack<N>(xr + j), wv = loadPack<N>(weight + j);
    Pack<D, N> out;
#pragma unroll
    for (int k = 0; k < N; ++k) out.v[k] = fromFloat<D>(toFloat(wv.v[k]) * (toFloat(xv.v[k]) * r));
    storePack<N>(yr + j, out);
  }
}

// With r = rstd and g = dY of one row:
//   dX_k = r · w_k · g_k − (r³ / D) · x_k · Σ_j g_j · w_j · x_j,   dW_j += Σ_rows g_j · x_j · r.
// Block (threadsPerRow, rowsPerBlock); slot = blockIdx.x · blockDim.y + threadIdx.y walks rows slot,
// slot + slots, ... When partials is not null, the slot's dW sums go to its row partials[slot, :]:
// a thread's first kRegisterPacks packs accumulate in registers (stored at the end), any further
// packs (rows over kRegisterPacks packs per thread) directly in that row. The elementwise float32
// arithmetic uses the _rn intrinsics so that it is not contracted into FMAs: the same roundings as
// the CPU kernel.
template <typename D, int N>
__global__ void __launch_bounds__(kMaxBlockThreads)
    rmsNormBackwardKernel(const D* dY, const D* x, const D* weight, const float* rstd, D* dX, float* partials,
                          int64_t rows, int64_t dim, bool accumulate) {
  __shared__ float scratch[32];
  const int64_t slot = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  const int64_t slots = static_cast<int64_t>(gridDim.x) * blockDim.y;
  const int64_t first = threadIdx.x * int64_t{N}, stride = int64_t{blockDim.x} * N;
  const int64_t firstSpilled = first + kRegisterPacks * stride;
  float* partialRow = partials ? partials + slot * dim : nullptr;
  float acc[kRegisterPacks][N];
#pragma unroll
  for (int s = 0; s < kRegisterPacks; ++s) {
#pragma unroll
    for (int k = 0; k < N; ++k) acc[s][k] = 0.0f;
  }
  if (partialRow) {
    for (int64_t j = firstSpilled; j < dim; j += stride) {
#pragma unroll
      for (int k = 0; k < N; ++k) partialRow[j + k] = 0.0f;
    }
  }
  // Uniform across the block in block-per-row mode (one slot per block), as blockSum requires.
  for (int64_t row = slot; row < rows; row += slots) {
    const D* g = dY + row * dim;
    const D* xr = x + row * dim;
    D* dx = dX + row * dim;
    float dot = 0.0f;
    for (int64_t j = first; j < dim; j += stride) {
      const Pack<D, N> gv = loadPack<N>(g + j), xv = loadPack<N>(xr + j), wv = loadPack<N>(weight + j);
#pragma unroll
      for (int k = 0; k < N; ++k) dot += toFloat(gv.v[k]) * toFloat(wv.v[k]) * toFloat(xv.v[k]);
    }
    dot = rowSum(dot, scratch);
    const float r = rstd[row];
    const double rD = r;
    const float c3 = static_cast<float>(rD * rD * rD * static_cast<double>(dot) / static_cast<double>(dim));
    // dX of the pack at column j, and g·x·r added to its N dW sums a[0, N) when dW is wanted.
    auto update = [&](int64_t j, float* a) {
      const Pack<D, N> gv = loadPack<N>(g + j), xv = loadPack<N>(xr + j), wv = loadPack<N>(weight + j);
      Pack<D, N> out;
      if (accumulate) out = loadPack<N>(dx + j);
#pragma unroll
      for (int k = 0; k < N; ++k) {
        const float gk = toFloat(gv.v[k]), xk = toFloat(xv.v[k]);
        float d = __fsub_rn(__fmul_rn(__fmul_rn(r, toFloat(wv.v[k])), gk), __fmul_rn(c3, xk));
        if (accumulate) d = __fadd_rn(toFloat(out.v[k]), d);
        out.v[k] = fromFloat<D>(d);
        if (partialRow) a[k] = __fadd_rn(a[k], __fmul_rn(__fmul_rn(gk, xk), r));
      }
      storePack<N>(dx + j, out);
    };
#pragma unroll
    for (int s = 0; s < kRegisterPacks; ++s) {
      const int64_t j = first + s * stride;
      if (j < dim) update(j, acc[s]);
    }
    for (int64_t j = firstSpilled; j < dim; j += stride) update(j, partialRow ? partialRow + j : nullptr);
  }
  if (partialRow) {
#pragma unroll
    for (int s = 0; s < kRegisterPacks; ++s) {
      const int64_t j = first + s * stride;
      if (j < dim) {
#pragma unroll
        for (int k = 0; k < N; ++k) partialRow[j + k] = acc[s][k];
      }
    }
  }
}

constexpr unsigned kSumColumns = 32, kSumLanes = 32;

// dWeight[j] += Σ_s partials[s, j] in float64. Block (kSumColumns, kSumLanes) over kSumColumns
// columns: lane y sums slots y, y + kSumLanes, ... (coalesced rows), then the lanes' sums are added in
// lane order; the result depends only on the partials.
__global__ void __launch_bounds__(kSumColumns * kSumLanes)
    sumSlotPartialsKernel(const float* partials, int64_t slots, int64_t dim, float* dWeight) {
  __shared__ double lanes[kSumLanes][kSumColumns + 1];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kSumColumns + threadIdx.x;
  double s = 0.0;
  if (j < dim) {
    for (int64_t slot = threadIdx.y; slot < slots; slot += kSumLanes) s += partials[slot * dim + j];
  }
  lanes[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && j < dim) {
    double total = 0.0;
    for (unsigned lane = 0; lane < kSumLanes; ++lane) total += lanes[lane][threadIdx.x];
    dWeight[j] += static_cast<float>(total);
  }
}

template <typename D, int N>
void launchRmsNorm(const RmsNormArgsT<D>& p) {
  const RowGeometry g = rowGeometry(p.dim / N);
  const dim3 block(g.threadsPerRow, g.rowsPerBlock);
  const unsigned blocks = static_cast<unsigned>((p.rows + g.rowsPerBlock - 1) / g.rowsPerBlock);
  rmsNormKernel<D, N><<<blocks, block, 0, stream()>>>(p.x, p.weight, p.y, p.rstd, p.rows, p.dim, p.eps);
  checkLaunch("rmsNormKernel");
}

template <typename D, int N>
void launchRmsNormBackward(const RmsNormBackwardArgsT<D>& p) {
  const RowGeometry g = rowGeometry(p.dim / N);
  const dim3 block(g.threadsPerRow, g.rowsPerBlock);
  const int64_t rowBlocks = (p.rows + g.rowsPerBlock - 1) / g.rowsPerBlock;
  if (!p.dWeight) {
    // No column sums: one slot per row.
    rmsNormBackwardKernel<D, N><<<static_cast<unsigned>(rowBlocks), block, 0, stream()>>>(
        p.dY, p.x, p.weight, p.rstd, p.dX, nullptr, p.rows, p.dim, p.accumulate);
    checkLaunch("rmsNormBackwardKernel");
    return;
  }
  int perSm = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perSm, rmsNormBackwardKernel<D, N>,
                                                      static_cast<int>(block.x * block.y), 0),
        "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  const int64_t slotBlocks =
      std::min<int64_t>(rowBlocks, int64_t{multiprocessorCount()} * std::clamp(perSm, 1, kMaxSlotBlocksPerSm));
  const int64_t slots = slotBlocks * g.rowsPerBlock;
  DeviceBuffer<float> partials(static_cast<size_t>(slots * p.dim));
  rmsNormBackwardKernel<D, N><<<static_cast<unsigned>(slotBlocks), block, 0, stream()>>>(
      p.dY, p.x, p.weight, p.rstd, p.dX, partials.data(), p.rows, p.dim, p.accumulate);
  checkLaunch("rmsNormBackwardKernel");
  sumSlotPartialsKernel<<<blocksFor(p.dim, kSumColumns), dim3(kSumColumns, kSumLanes), 0, stream()>>>(
      partials.data(), slots, p.dim, p.dWeight);
  checkLaunch("sumSlotPartialsKernel");
}

}  // namespace

template <typename T>
void rmsNorm(const RmsNormArgsT<T>& p) {
  if (p.rows == 0 || p.dim == 0) return;
  using D = DeviceType<T>;
  constexpr int kPack = kPack16<D>;
  const RmsNormArgsT<D> d{devicePtr(p.x), devicePtr(p.weight), devicePtr(p.y), p.rstd, p.rows, p.dim, p.eps};
  if (p.dim % kPack == 0 && allAligned(16, {d.x, d.weight, d.y})) {
    launchRmsNorm<D, kPack>(d);
  } else {
    launchRmsNorm<D, 1>(d);
  }
}

template <typename T>
void rmsNormBackward(const RmsNormBackwardArgsT<T>& p) {
  if (p.rows == 0 || p.dim == 0) return;  // dWeight += an empty sum
  using D = DeviceType<T>;
  constexpr int kPack = kPack16<D>;
  const RmsNormBackwardArgsT<D> d{devicePtr(p.dY), devicePtr(p.x), devicePtr(p.weight), p.rstd, devicePtr(p.dX),
                                  p.dWeight,       p.rows,         p.dim,          p.accumulate};
  if (p.dim % kPack == 0 && allAligned(16, {d.dY, d.x, d.weight, d.dX})) {
    launchRmsNormBackward<D, kPack>(d);
  } else {
    launchRmsNormBackward<D, 1>(d);
  }
}

template void rmsNorm<float>(const RmsNormArgsT<float>&);
template void rmsNorm<bf16>(const RmsNormArgsT<bf16>&);
template void rmsNormBackward<float>(const RmsNormBackwardArgsT<float>&);
template void rmsNormBackward<bf16>(const RmsNormBackwardArgsT<bf16>&);

}  // namespace rlhf::cuda
