// adamw: the CUDA kernel's one launch over a list of tensors against the CPU kernel, over several
// steps, when a GPU is present. Lists mix odd sizes (1, 3, sizes around the 8192-element chunks),
// an empty tensor, a misaligned tensor (element-wise path), and both of torch.lerp's formulas; a
// realistic list is a LoRA r = 16 adapter on a Llama-3.2-1B's seven projections.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "../../src/kernels.h"
#include "cuda_harness.h"
#include "harness.h"

#ifdef RLHF_WITH_CUDA
namespace {

using namespace rlhf;
using test::OffsetDeviceArray;

// One tensor's host state and device copies.
struct AdamWState {
  std::vector<float> param, m, v;
  std::unique_ptr<OffsetDeviceArray<float>> gParam, gGrad, gM, gV;  // gGrad: the current step's
};

struct Hyper {
  double lr, beta1, beta2, eps, weightDecay;
};

// Runs `steps` steps on both backends with fresh gradients each step and compares param, m and v
// after every step. offsets[i] shifts tensor i's device pointers.
void checkAdamW(const std::vector<int64_t>& counts, const std::vector<size_t>& offsets, const Hyper& h, int steps,
                const std::string& label) {
  std::vector<AdamWState> states(counts.size());
  for (size_t i = 0; i < counts.size(); ++i) {
    AdamWState& s = states[i];
    const int64_t n = counts[i];
    s.param = test::randomNormals(n, 51 + 7 * static_cast<uint32_t>(i));
    s.m = test::randomNormals(n, 52 + 7 * static_cast<uint32_t>(i), 0.1f);
    s.v = test::randomNormals(n, 53 + 7 * static_cast<uint32_t>(i), 0.1f);
    for (float& x : s.v) x *= x;  // second moments are ≥ 0
    s.gParam = std::make_unique<OffsetDeviceArray<float>>(s.param, offsets[i]);
    s.gM = std::make_unique<OffsetDeviceArray<float>>(s.m, offsets[i]);
    s.gV = std::make_unique<OffsetDeviceArray<float>>(s.v, offsets[i]);
  }
  for (int step = 1; step <= steps; ++step) {
    std::vector<std::vector<float>> grads(counts.size());
    std::vector<AdamWTensor> cpuList, gpuList;
    for (size_t i = 0; i < counts.size(); ++i) {
      AdamWState& s = states[i];
      grads[i] = test::randomNormals(counts[i], 1000 * step + static_cast<uint32_t>(i), 0.01f);
      s.gGrad = std::make_unique<OffsetDeviceArray<float>>(grads[i], offsets[i]);
      cpuList.push_back({s.param.data(), grads[i].data(), s.m.data(), s.v.data(), counts[i]});
      gpuList.push_back({s.gParam->data(), s.gGrad->data(), s.gM->data(), s.gV->data(), counts[i]});
    }
    const int64_t size = static_cast<int64_t>(counts.size());
    cpu::adamw({cpuList.data(), size, h.lr, h.beta1, h.beta2, h.eps, h.weightDecay, step});
    cuda::adamw({gpuList.data(), size, h.lr, h.beta1, h.beta2, h.eps, h.weightDecay, step});
    for (size_t i = 0; i < counts.size(); ++i) {
      AdamWState& s = states[i];
      const std::string at = label + " tensor " + std::to_string(i) + " (" + std::to_string(counts[i]) + ") step " +
                             std::to_string(step);
      // The same float32 operations in the same order, each rounded once: expected bit-identical.
      // 1e-6 leaves room for a host compiler that contracts the CPU's operations into FMAs.
      CHECK_PARITY("param" + at, s.gParam->download(), s.param, 1e-6, 1e-7 * test::maxAbs(s.param));
      CHECK_PARITY("m" + at, s.gM->download(), s.m, 1e-6, 1e-7 * test::maxAbs(s.m));
      CHECK_PARITY("v" + at, s.gV->download(), s.v, 1e-6, 1e-7 * test::maxAbs(s.v));
    }
  }
}

}  // namespace
#endif

TEST(adamw_cuda_matches_cpu_odd_lists) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  rlhf::test::requireCuda();
  const std::vector<int64_t> counts = {1, 3, 4097, 0, 8192, 8193, 10001, 5};
  const std::vector<size_t> offsets = {0, 0, 0, 0, 0, 0, 1, 1};
  // β1 = 0.9: lerp from m (weight 0.1 < 0.5); β1 = 0.3: lerp from g (weight 0.7).
  checkAdamW(counts, offsets, {1e-3, 0.9, 0.999, 1e-8, 0.01}, 3, "beta1 0.9");
  checkAdamW(counts, offsets, {3e-2, 0.3, 0.95, 1e-6, 0.1}, 3, "beta1 0.3");
#endif
}

TEST(adamw_cuda_matches_cpu_lora_1b) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  rlhf::test::requireCuda();
  // Llama-3.2-1B (hidden 2048, kv 512, MLP 8192), r = 16: A [16, in] and B [out, 16] for q, k, v, o,
  // gate, up, down; 4 of the 16 layers keep the test short (the benchmark runs all 16).
  const int64_t r = 16;
  const int64_t shapes[7][2] = {{2048, 2048}, {2048, 512}, {2048, 512}, {2048, 2048},
                                {2048, 8192}, {2048, 8192}, {8192, 2048}};  // {in, out}
  std::vector<int64_t> counts;
  for (int layer = 0; layer < 4; ++layer) {
    for (const auto& s : shapes) {
      counts.push_back(r * s[0]);
      counts.push_back(s[1] * r);
    }
  }
  checkAdamW(counts, std::vector<size_t>(counts.size(), 0), {2e-4, 0.9, 0.999, 1e-8, 0.0}, 2, "lora");
#endif
}
