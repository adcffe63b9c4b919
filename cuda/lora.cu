// LoRA linear (src/kernels.h §7) on the GPU: y = x·Wᵀ (+ bias) + s · (drop(x)·Aᵀ)·Bᵀ and its
// backward, never forming B·A. Reference semantics: src/cpu/lora.cpp.
//
// The base products go through gemm (cuBLASLt when it loaded), the rank-r ones through the
// handwritten SIMT kernel (gemm_tiled.cu), which multiplies the T activations by the float32 adapters
// exactly (cuBLASLt has no bf16 x float32 product), splits the long reductions over K, and fuses
// what would otherwise be extra passes over [M, K] or [M, N] arrays:
//   forward   xa = drop(x)·Aᵀ           the mask applied to x as its tiles are loaded
//             y  = s·xa·Bᵀ + bias       the adapter term and the bias written in one pass, and then
//             y += x·Wᵀ                 the base GEMM with beta = 1 (C read inside the GEMM)
//   backward  dxa = s·dY·B
//             dB += s·dYᵀ·xa
//             dA += dxaᵀ·drop(x)        the mask applied to x as its tiles are loaded
//             dX (+)= drop'(dxa·A)      the mask and 1/(1 − p) applied as the product is stored, then
//             dX += dY·W                the base GEMM with beta = 1
//             dW += dYᵀ·x,  dBias += colsum(dY)   when the base weight and bias are trained
// so the adapter costs one extra read of x in the forward and one read of dY and of x in the
// backward, plus one write of y and dX, all done before the base GEMM adds into them.
#include <algorithm>

#include "device_buffer.cuh"
#include "gemm.cuh"
#include "runtime.cuh"

namespace rlhf::cuda {
namespace {

// dBias[c] += Σ_r dY[r, c]. Block: 32 x 8 threads on 32 columns and one range of rows; thread
// (tx, ty) sums rows ty, ty + 8, ... of its range in column c0 + tx (a warp reads 32 consecutive
// columns of a row), the 8 partial sums meet in shared memory, and one atomic add per column and
// block lands the range's sum (grid.y splits the rows so that enough blocks run).
constexpr int kColumnsPerBlock = 32, kRowLanes = 8;

template <typename D>
__global__ void __launch_bounds__(kColumnsPerBlock* kRowLanes)
    addColumnSumsKernel(const D* __restrict__ src, int64_t rows, int64_t cols, int64_t rowsPerBlock,
                        float* __restrict__ dst) {
  __shared__ float partial[kRowLanes][kColumnsPerBlock + 1];
  const int tx = threadIdx.x % kColumnsPerBlock, ty = threadIdx.x / kColumnsPerBlock;
  const int64_t col = blockIdx.x * static_cast<int64_t>(kColumnsPerBlock) + tx;
  const int64_t rowBegin = blockIdx.y * rowsPerBlock;
  const int64_t rowEnd = rowBegin + rowsPerBlock < rows ? rowBegin + rowsPerBlock : rows;
  float sum = 0.0f;
  if (col < cols) {
    for (int64_t r = rowBegin + ty; r < rowEnd; r += kRowLanes) sum += toFloat(src[r * cols + col]);
  }
  partial[ty][tx] = sum;
  __syncthreads();
  if (ty == 0 && col < cols) {
    float total = 0.0f;
#pragma unroll
    for (int i = 0; i < kRowLanes; ++i) total += partial[i][tx];
    atomicAdd(dst + col, total);
  }
}

template <typename T>
void addColumnSums(const T* src, int64_t rows, int64_t cols, float* dst) {
  if (rows == 0 || cols == 0) return;
  const int64_t columnBlocks = (cols + kColumnsPerBlock - 1) / kColumnsPerBlock;
  // About 1024 blocks in all (several waves on any current GPU), each summing at least 64 rows.
  const int64_t rowBlocks = std::max<int64_t>(1, std::min((1024 + columnBlocks - 1) / columnBlocks, rows / 64));
  const int64_t rowsPerBlock = (rows + rowBlocks - 1) / rowBlocks;
  const dim3 grid(static_cast<unsigned>(columnBlocks), static_cast<unsigned>((rows + rowsPerBlock - 1) / rowsPerBlock));
  addColumnSumsKernel<<<grid, kColumnsPerBlock * kRowLanes, 0, stream()>>>(devicePtr(src), rows, cols, rowsPerBlock,
                                                                          dst);
  checkLaunch("addColumnSumsKernel");
}

}  // namespace

template <typename T>
void lora(const LoraArgsT<T>& p) {
  const int64_t m = p.m, k = p.k, n = p.n, r = p.rank;
  bool yHoldsTerms = false;  // y already holds the adapter term and/or the bias
  if (r > 0) {
    // xa [M, r] = drop(x) [M, K] · Aᵀ [K, r]   (A is [r, K])
    GemmOp<T, float, float> down{p.x, p.a, p.xa, 1, m, r, k, false, true, 0, 0, 0, 1.0f, 0.0f};
    down.maskA = DropoutMask::make(p.dropout, p.seed);
    gemmTiled(down);
    // y [M, N] = s · xa [M, r] · Bᵀ [r, N] + bias   (B is [N, r])
    GemmOp<float, float, T> up{p.xa, p.b, p.y, 1, m, n, r, false, true, 0, 0, 0, p.scale, 0.0f};
    up.bias = p.bias;
    gemmTiled(up);
    yHoldsTerms = true;
  } else if (p.bias) {
    // y = bias (a product over K = 0 plus the bias row)
    GemmOp<float, float, T> biasOnly{nullptr, nullptr, p.y, 1, m, n, 0, false, false, 0, 0, 0, 1.0f, 0.0f};
    biasOnly.bias = p.bias;
    gemmTiled(biasOnly);
    yHoldsTerms = true;
  }
  // y (+)= x [M, K] · Wᵀ [K, N]   (W is [N, K])
  gemm(GemmOp<T, T, T>{p.x, p.weight, p.y, 1, m, n, k, false, true, 0, 0, 0, 1.0f, yHoldsTerms ? 1.0f : 0.0f});
}

template <typename T>
void loraBackward(const LoraBackwardArgsT<T>& p) {
  const int64_t m = p.m, k = p.k, n = p.n, r = p.rank;
  // dW [N, K] += dYᵀ [N, M] · x [M, K]
  if (p.dWeight) gemm(GemmOp<T, T, float>{p.dY, p.x, p.dWeight, 1, n, k, m, true, false, 0, 0, 0, 1.0f, 1.0f});
  if (p.dBias) addColumnSums(p.dY, m, n, p.dBias);

  const DropoutMask mask = DropoutMask::make(p.dropout, p.seed);
  DeviceBuffer<float> dxa;
  if (r > 0) {
    // dB [N, r] += s · dYᵀ [N, M] · xa [M, r]
    if (p.dB) gemmTiled(GemmOp<T, float, float>{p.dY, p.xa, p.dB, 1, n, r, m, true, false, 0, 0, 0, p.scale, 1.0f});
    if (p.dA || p.dX) {
      // dxa [M, r] = s · dY [M, N] · B [N, r]
      dxa = DeviceBuffer<float>(static_cast<size_t>(m * r));
      gemmTiled(GemmOp<T, float, float>{p.dY, p.b, dxa.data(), 1, m, r, n, false, false, 0, 0, 0, p.scale, 0.0f});
    }
    if (p.dA) {
      // dA [r, K] += dxaᵀ [r, M] · drop(x) [M, K]
      GemmOp<float, T, float> dA{dxa.data(), p.x, p.dA, 1, r, k, m, true, false, 0, 0, 0, 1.0f, 1.0f};
      dA.maskB = mask;
      gemmTiled(dA);
    }
  }
  if (p.dX) {
    float beta = p.accumulateDx ? 1.0f : 0.0f;
    if (r > 0) {
      // dX [M, K] = drop'(dxa [M, r] · A [r, K]) (+ dX): the forward's mask and 1/(1 − p)
      GemmOp<float, float, T> dX{dxa.data(), p.a, p.dX, 1, m, k, r, false, false, 0, 0, 0, 1.0f, beta};
      dX.maskC = mask;
      gemmTiled(dX);
      beta = 1.0f;
    }
    // dX (+)= dY [M, N] · W [N, K]
    gemm(GemmOp<T, T, T>{p.dY, p.weight, p.dX, 1, m, k, n, false, false, 0, 0, 0, 1.0f, beta});
  }
}

template void lora<float>(const LoraArgsT<float>&);
template void lora<bf16>(const LoraArgsT<bf16>&);
template void loraBackward<float>(const LoraBackwardArgsT<float>&);
template void loraBackward<bf16>(const LoraBackwardArgsT<bf16>&);

}  // namespace rlhf::cuda
