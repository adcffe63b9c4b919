// LoRA linear: y = x·Wᵀ (+ bias) + s · (drop(x)·Aᵀ)·Bᵀ, as three sgemm calls that never form B·A
// (which would cost N·K·r extra work and N·K memory per call). Backward per kernels.h.
#include <algorithm>

#include "../kernels.h"
#include "../memory.h"
#include "dropout_mask.h"
#include "gemm.h"
#include "parallel.h"

namespace rlhf::cpu {
namespace {

constexpr int64_t kGrainElements = 1 << 14;
constexpr int64_t kColumnBlock = 64;

// PEFT's lora_dropout on the adapter path, as a mask that is a pure function of (seed, index):
// out[i] (+)= keep(i) ? in[i] / (1 − p) : 0 over `count` elements of an [M, K] array.
void applyDropout(const float* in, float* out, int64_t count, float dropout, uint64_t seed, bool accumulate) {
  const uint64_t key = dropoutSeedKey(seed);
  const uint32_t threshold = dropoutThreshold(dropout);
  const float invKeep = 1.0f / (1.0f - dropout);
  parallelFor(count, kGrainElements, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float v = dropoutKeep(key, static_cast<uint64_t>(i), threshold) ? in[i] * invKeep : 0.0f;
      out[i] = accumulate ? out[i] + v : v;
    }
  });
}

// dst[c] += Σ_r src[r, c] for src [rows, cols], summed in float64 in row order. Threads own
// disjoint column blocks, so the result does not depend on the thread count.
void addColumnSums(const float* src, int64_t rows, int64_t cols, float* dst) {
  const int64_t blocks = (cols + kColumnBlock - 1) / kColumnBlock;
  const int64_t grain = std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, rows * kColumnBlock));
  parallelFor(blocks, grain, [&](int64_t blockBegin, int64_t blockEnd) {
    for (int64_t blk = blockBegin; blk < blockEnd; ++blk) {
      const int64_t c0 = blk * kColumnBlock;
      const int64_t width = std::min(kColumnBlock, cols - c0);
      double acc[kColumnBlock] = {};
      for (int64_t r = 0; r < rows; ++r) {
        const float* row = src + r * cols + c0;
        for (int64_t c = 0; c < width; ++c) acc[c] += row[c];
      }
      for (int64_t c = 0; c < width; ++c) dst[c0 + c] += static_cast<float>(acc[c]);
    }
  });
}

}  // namespace

void lora(const LoraArgs& p) {
  const int64_t m = p.m, k = p.k, n = p.n, r = p.rank;
  // y = bias (broadcast over the rows), then y += x·Wᵀ : [M, K] x [K, N].
  if (p.bias) {
    parallelFor(m, std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, n)), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) std::copy(p.bias, p.bias + n, p.y + i * n);
    });
  }
  sgemm(false, true, m, n, k, 1.0f, p.x, k, p.weight, k, p.bias ? 1.0f : 0.0f, p.y, n);
  if (r == 0) return;

  // xa = drop(x)·Aᵀ : [M, K] x [K, r], saved for the backward; then y += s · xa·Bᵀ : [M, r] x [r, N].
  ScratchBuffer<float> dropped(p.dropout > 0.0f ? static_cast<size_t>(m * k) : 0);
  const float* xd = p.x;
  if (p.dropout > 0.0f) {
    applyDropout(p.x, dropped.data(), m * k, p.dropout, p.seed, false);
    xd = dropped.data();
  }
  sgemm(false, true, m, r, k, 1.0f, xd, k, p.a, k, 0.0f, p.xa, r);
  sgemm(false, true, m, n, r, p.scale, p.xa, r, p.b, r, 1.0f, p.y, n);
}

void loraBackward(const LoraBackwardArgs& p) {
  const int64_t m = p.m, k = p.k, n = p.n, r = p.rank;
  // Base path: dX (+)= dY·W : [M, N] x [N, K];  dW += dYᵀ·x : [N, M] x [M, K];  dBias += colsum(dY).
  if (p.dX) sgemm(false, false, m, k, n, 1.0f, p.dY, n, p.weight, k, p.accumulateDx ? 1.0f : 0.0f, p.dX, k);
  if (p.dWeight) sgemm(true, false, n, k, m, 1.0f, p.dY, n, p.x, k, 1.0f, p.dWeight, k);
  if (p.dBias) addColumnSums(p.dY, m, n, p.dBias);
  if (r == 0) return;

  // Adapter path, with xa = drop(x)·Aᵀ from the forward:
  //   dB += s · dYᵀ·xa : [N, M] x [M, r]
  //   dxa = s · dY·B   : [M, N] x [N, r]
  //   dA += dxaᵀ·drop(x) : [r, M] x [M, K]
  //   dX += drop'(dxa·A) : [M, r] x [r, K], where drop' applies the forward's mask and 1/(1 − p).
  if (p.dB) sgemm(true, false, n, r, m, p.scale, p.dY, n, p.xa, r, 1.0f, p.dB, r);
  if (!p.dA && !p.dX) return;
  ScratchBuffer<float> dxa(static_cast<size_t>(m * r));
  sgemm(false, false, m, r, n, p.scale, p.dY, n, p.b, r, 0.0f, dxa.data(), r);
  if (p.dropout == 0.0f) {
    if (p.dA) sgemm(true, false, r, k, m, 1.0f, dxa.data(), r, p.x, k, 1.0f, p.dA, k);
    if (p.dX) sgemm(false, false, m, k, r, 1.0f, dxa.data(), r, p.a, k, 1.0f, p.dX, k);
    return;
  }
  // One [M, K] scratch serves twice: first drop(x) for dA, then dxa·A before its mask is applied.
  ScratchBuffer<float> work(static_cast<size_t>(m * k));
  if (p.dA) {
    applyDropout(p.x, work.data(), m * k, p.dropout, p.seed, false);
    sgemm(true, false, r, k, m, 1.0f, dxa.data(), r, work.data(), k, 1.0f, p.dA, k);
  }
  if (p.dX) {
    sgemm(false, false, m, k, r, 1.0f, dxa.data(), r, p.a, k, 0.0f, work.data(), k);
    applyDropout(work.data(), p.dX, m * k, p.dropout, p.seed, true);
  }
}

}  // namespace rlhf::cpu
