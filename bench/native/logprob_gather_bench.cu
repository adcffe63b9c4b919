// Log-prob gather (lm_head matmul + online log-softmax + target gather, the [N, V] logits never
// materialised): the forward, and the forward + backward with dHidden and dWeight, at a Llama-3-8B
// shape (V = 128256, D = 4096) and a Llama-2-7B-like one (V = 32000, D = 2048 ... 4096) in bf16,
// plus one float32 shape. Work: 2·N·V·D FLOP for the forward; the backward adds 3x that
// (recomputed logits, dHidden = dz·W, dWeight += dzᵀ·H). Rows are compute-bound: their rate is
// compared with the bf16 GEMM ceiling, whatever the element type.
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "../../cuda/device_buffer.cuh"
#include "../../cuda/runtime.cuh"
#include "../../cuda/types.cuh"
#include "bench.h"

namespace rlhf::bench {
namespace {

constexpr unsigned kFillThreads = 256;
constexpr unsigned kFillBlocks = 4096;

// A deterministic uniform value in [−1, 1) per (seed, index) (SplitMix64 finaliser).
__device__ float hashUniform(uint64_t seed, int64_t i) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(i);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

template <typename D>
__global__ void fillKernel(D* out, int64_t count, float scale, uint64_t seed) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = cuda::fromFloat<D>(scale * hashUniform(seed, i));
  }
}

__global__ void fillTargetsKernel(int32_t* targets, int64_t n, int32_t vocab, uint64_t seed) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float u = 0.5f * (hashUniform(seed, i) + 1.0f);  // [0, 1)
    targets[i] = min(vocab - 1, static_cast<int32_t>(u * static_cast<float>(vocab)));
  }
}

template <typename T>
void fill(T* out, int64_t count, float scale, uint64_t seed) {
  fillKernel<<<kFillBlocks, kFillThreads, 0, cuda::stream()>>>(cuda::devicePtr(out), count, scale, seed);
  cuda::checkLaunch("fillKernel");
}

template <typename T>
void benchGather(Context& ctx, int64_t n, int64_t vocab, int64_t dim) {
  const std::string kernel = std::string("logprobGather ") + (std::is_same_v<T, bf16> ? "bf16" : "f32");
  const std::string shape = "N=" + std::to_string(n) + " V=" + std::to_string(vocab) + " D=" + std::to_string(dim);
  cuda::DeviceBuffer<T> hidden(n * dim), weight(vocab * dim), dHidden(n * dim);
  cuda::DeviceBuffer<int32_t> targets(n);
  cuda::DeviceBuffer<float> logp(n), lse(n), dLogp(n), dWeight(vocab * dim);
  // hidden ~ U(−1, 1) and weight ~ U(−3/√D, 3/√D) give logits of unit variance.
  fill(hidden.data(), n * dim, 1.0f, 1);
  fill(weight.data(), vocab * dim, 3.0f / std::sqrt(static_cast<float>(dim)), 2);
  fill(dLogp.data(), n, 1.0f, 3);
  cuda::zeroDevice(dWeight.data(), vocab * dim * sizeof(float));
  fillTargetsKernel<<<kFillBlocks, kFillThreads, 0, cuda::stream()>>>(targets.data(), n, static_cast<int32_t>(vocab), 4);
  cuda::checkLaunch("fillTargetsKernel");

  const LogprobGatherArgsT<T> forward{hidden.data(), weight.data(), targets.data(), n,       dim,    vocab,
                                      1.0f,          -100,          256,            logp.data(), lse.data(),
                                      nullptr,       nullptr,       nullptr};
  const LogprobGatherBackwardArgsT<T> backward{
      hidden.data(), weight.data(), targets.data(), lse.data(), nullptr, dLogp.data(), nullptr, dHidden.data(),
      dWeight.data(), n, dim, vocab, 1.0f, -100, 256, false};
  const double flop = 2.0 * static_cast<double>(n) * static_cast<double>(vocab) * static_cast<double>(dim);

  double ms = ctx.time([&] { cuda::logprobGather(forward); });
  ctx.report({kernel, shape, ms, flop, true, ctx.lastPeakBytes(), "forward"});
  ms = ctx.time(
      [&] {
        cuda::logprobGather(forward);
        cuda::logprobGatherBackward(backward);
      },
      5, 1);
  ctx.report({kernel, shape, ms, 4.0 * flop, true, ctx.lastPeakBytes(), "forward + backward (dHidden, dWeight)"});
}

}  // namespace

BENCH(logprob_gather) {
  benchGather<bf16>(ctx, 4096, 128256, 4096);
  benchGather<bf16>(ctx, 8192, 32000, 2048);
  benchGather<float>(ctx, 2048, 32000, 1024);
}

}  // namespace rlhf::bench
