// GEMM and LoRA benchmarks at the shapes of a 1B Llama (hidden 2048, 8 KV heads of 64, MLP 8192)
// over 4096 tokens, bf16:
//   gemm_llama1b   every projection's forward (x·Wᵀ), input gradient (dY·W) and weight gradient
//                  (dYᵀ·x into float32), on cuBLASLt and on the handwritten fallback;
//   lora_r16       LoRA forward + backward at r = 16 (dX, dA, dB; frozen base) against the base
//                  GEMMs alone (y = x·Wᵀ, dX = dY·W), with the overhead ratio in the note.
#include <cstdio>
#include <string>
#include <vector>

#include "../../cuda/device_buffer.cuh"
#include "../../cuda/runtime.cuh"
#include "../../cuda/types.cuh"
#include "../../src/cpu/dropout_mask.h"
#include "bench.h"

namespace rlhf::bench {
namespace {

constexpr int64_t kTokens = 4096;

struct Projection {
  const char* name;
  int64_t in, out;  // K, N
};
const Projection kProjections[] = {
    {"q/o proj", 2048, 2048},
    {"k/v proj", 2048, 512},
    {"gate/up proj", 2048, 8192},
    {"down proj", 8192, 2048},
};

// Uniform values in [−scale, scale) from a hash of the index: benchmark inputs that are neither
// zeros (which would flatter the GPU's power budget) nor NaN.
template <typename D>
__global__ void fillKernel(D* out, int64_t count, uint64_t seed, float scale) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  const uint64_t h = mix64(mix64(seed) + static_cast<uint64_t>(i));
  out[i] = cuda::fromFloat<D>(scale * (static_cast<float>(h >> 40) / 8388608.0f - 1.0f));
}

template <typename T>
cuda::DeviceBuffer<T> filled(int64_t count, uint64_t seed, float scale = 1.0f) {
  cuda::DeviceBuffer<T> buf(static_cast<size_t>(count));
  fillKernel<<<cuda::blocksFor(count, 256), 256, 0, cuda::stream()>>>(cuda::devicePtr(buf.data()), count, seed, scale);
  cuda::checkLaunch("fillKernel");
  return buf;
}

std::string shapeText(int64_t m, int64_t n, int64_t k) {
  return std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k);
}

// The GEMM backends to compare: cuBLASLt when it is in use, and always the fallback.
struct Backend {
  bool fallback;
  const char* note;
};
std::vector<Backend> backends() {
  cuda::forceGemmFallback(false);
  std::vector<Backend> out;
  if (cuda::gemmUsesCublasLt()) out.push_back({false, "cuBLASLt"});
  else std::printf("gemm_llama1b: no cuBLASLt (%s)\n", cuda::gemmBackendDescription().c_str());
  out.push_back({true, "fallback"});
  return out;
}

}  // namespace

BENCH(gemm_llama1b) {
  const bool wasForced = cuda::gemmFallbackForced();
  for (const Backend& backend : backends()) {
    cuda::forceGemmFallback(backend.fallback);
    for (const Projection& p : kProjections) {
      const int64_t m = kTokens, n = p.out, k = p.in;
      auto x = filled<bf16>(m * k, 1), w = filled<bf16>(n * k, 2, 0.05f), dY = filled<bf16>(m * n, 3);
      cuda::DeviceBuffer<bf16> y(m * n), dX(m * k);
      cuda::DeviceBuffer<float> dW(n * k);
      const double flop = 2.0 * m * n * k;
      // y [M, N] = x [M, K] · Wᵀ
      const MatmulArgsT<bf16, bf16> fwd{x.data(), w.data(), y.data(), 1, m, n, k, false, true, 0, 0, 0, 1.0f, 0.0f};
      double ms = ctx.time([&] { cuda::matmul(fwd); });
      ctx.report({"matmul x·Wᵀ", std::string(p.name) + " " + shapeText(m, n, k), ms, flop, true, ctx.lastPeakBytes(),
                  backend.note});
      // dX [M, K] = dY [M, N] · W [N, K]
      const MatmulArgsT<bf16, bf16> bwdX{dY.data(), w.data(), dX.data(), 1, m, k, n, false, false, 0, 0, 0, 1.0f, 0.0f};
      ms = ctx.time([&] { cuda::matmul(bwdX); });
      ctx.report({"matmul dY·W", std::string(p.name) + " " + shapeText(m, k, n), ms, flop, true, ctx.lastPeakBytes(),
                  backend.note});
      // dW [N, K] += dYᵀ [N, M] · x [M, K], into float32
      const MatmulArgsT<bf16, float> bwdW{dY.data(), x.data(), dW.data(), 1, n, k, m, true, false, 0, 0, 0, 1.0f, 1.0f};
      ms = ctx.time([&] { cuda::matmul(bwdW); });
      ctx.report({"matmul dYᵀ·x -> f32", std::string(p.name) + " " + shapeText(n, k, m), ms, flop, true,
                  ctx.lastPeakBytes(), backend.note});
    }
  }
  cuda::forceGemmFallback(wasForced);
}

BENCH(lora_r16) {
  constexpr int64_t r = 16;
  const float scale = 2.0f;
  const bool wasForced = cuda::gemmFallbackForced();
  const std::vector<Backend> all = backends();
  const Backend& backend = all.front();  // cuBLASLt when available
  cuda::forceGemmFallback(backend.fallback);
  for (const Projection& p : {kProjections[0], kProjections[2]}) {
    for (float dropout : {0.0f, 0.05f}) {
      const int64_t m = kTokens, n = p.out, k = p.in;
      auto x = filled<bf16>(m * k, 11), w = filled<bf16>(n * k, 12, 0.05f), dY = filled<bf16>(m * n, 13);
      auto a = filled<float>(r * k, 14, 0.02f), b = filled<float>(n * r, 15, 0.02f);
      cuda::DeviceBuffer<bf16> y(m * n), dX(m * k);
      cuda::DeviceBuffer<float> xa(m * r), dA(r * k), dB(n * r);
      const std::string shape = std::string(p.name) + " " + shapeText(m, n, k) + (dropout > 0 ? " p=0.05" : "");
      // The base layer alone: y = x·Wᵀ, dX = dY·W.
      const MatmulArgsT<bf16, bf16> fwd{x.data(), w.data(), y.data(), 1, m, n, k, false, true, 0, 0, 0, 1.0f, 0.0f};
      const MatmulArgsT<bf16, bf16> bwdX{dY.data(), w.data(), dX.data(), 1, m, k, n, false, false, 0, 0, 0, 1.0f, 0.0f};
      const double baseMs = ctx.time([&] {
        cuda::matmul(fwd);
        cuda::matmul(bwdX);
      });
      const double baseFlop = 4.0 * m * n * k;
      ctx.report({"base fwd+bwd", shape, baseMs, baseFlop, true, ctx.lastPeakBytes(), backend.note});
      const LoraArgsT<bf16> loraFwd{x.data(), w.data(), nullptr, a.data(), b.data(), y.data(), xa.data(),
                                    m, k, n, r, scale, dropout, 7};
      const LoraBackwardArgsT<bf16> loraBwd{dY.data(), x.data(), w.data(), a.data(), b.data(), xa.data(), dX.data(),
                                            dA.data(), dB.data(), nullptr, nullptr, m, k, n, r, scale, dropout, 7,
                                            false};
      const double loraMs = ctx.time([&] {
        cuda::lora(loraFwd);
        cuda::loraBackward(loraBwd);
      });
      // The adapter's own products: xa, y += s·xa·Bᵀ, dxa, dB, dA, dX += dxa·A (2·M·r·(K or N) each).
      const double loraFlop = baseFlop + 2.0 * m * r * (3.0 * k + 3.0 * n);
      char note[96];
      std::snprintf(note, sizeof note, "%s, %+.1f%% over the base", backend.note, 100.0 * (loraMs / baseMs - 1.0));
      ctx.report({"lora r16 fwd+bwd", shape, loraMs, loraFlop, true, ctx.lastPeakBytes(), note});
    }
  }
  cuda::forceGemmFallback(wasForced);
}

}  // namespace rlhf::bench
