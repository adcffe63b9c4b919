// sumOfSquares / scaleInPlace: the CUDA list kernels against the CPU kernels when a GPU is present,
// on lists of odd sizes (around the 8192-element chunks, an empty tensor, misaligned tensors), an
// empty list, and the gradients of a LoRA r = 16 adapter on a Llama-3.2-1B.
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

void checkNorm(const std::vector<int64_t>& counts, const std::vector<size_t>& offsets, const std::string& label) {
  std::vector<std::vector<float>> host;
  std::vector<std::unique_ptr<OffsetDeviceArray<float>>> device;
  std::vector<float*> cpuData, gpuData;
  for (size_t i = 0; i < counts.size(); ++i) {
    host.push_back(test::randomNormals(counts[i], 61 + static_cast<uint32_t>(i), 0.05f));
    device.push_back(std::make_unique<OffsetDeviceArray<float>>(host[i], offsets[i]));
  }
  for (size_t i = 0; i < counts.size(); ++i) {
    cpuData.push_back(host[i].data());
    gpuData.push_back(device[i]->data());
  }
  const int64_t size = static_cast<int64_t>(counts.size());
  const TensorList cpuList{cpuData.data(), counts.data(), size}, gpuList{gpuData.data(), counts.data(), size};

  const double want = cpu::sumOfSquares(cpuList);
  const double got = cuda::sumOfSquares(gpuList);
  // Both sum float64 squares, in different orders: equal up to float64 rounding accumulated over
  // chains of thousands of additions (far below float32 resolution).
  if (!(std::fabs(got - want) <= 1e-10 * std::fabs(want))) {
    test::reportFailure(__FILE__, __LINE__,
                        "sumOfSquares " + label + ": got " + std::to_string(got) + ", want " + std::to_string(want));
  }

  const float factor = 0.37f;
  cpu::scaleInPlace(cpuList, factor);
  cuda::scaleInPlace(gpuList, factor);
  for (size_t i = 0; i < counts.size(); ++i) {
    // One float32 product per element: exact.
    CHECK_PARITY("scaled " + label + " tensor " + std::to_string(i), device[i]->download(), host[i], 0.0, 0.0);
  }
}

}  // namespace
#endif

TEST(grad_norm_cuda_matches_cpu_odd_lists) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  rlhf::test::requireCuda();
  checkNorm({1, 3, 4097, 0, 8192, 8193, 100003, 5}, {0, 0, 0, 0, 0, 0, 1, 1}, "odd sizes");
  checkNorm({7}, {1}, "one misaligned tensor");
  checkNorm({}, {}, "empty list");
#endif
}

TEST(grad_norm_cuda_matches_cpu_lora_1b) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  rlhf::test::requireCuda();
  // Llama-3.2-1B, r = 16: A [16, in] and B [out, 16] of q, k, v, o, gate, up, down in 16 layers
  // (224 tensors, 11.3 M gradients).
  const int64_t shapes[7][2] = {{2048, 2048}, {2048, 512}, {2048, 512}, {2048, 2048},
                                {2048, 8192}, {2048, 8192}, {8192, 2048}};  // {in, out}
  std::vector<int64_t> counts;
  for (int layer = 0; layer < 16; ++layer) {
    for (const auto& s : shapes) {
      counts.push_back(16 * s[0]);
      counts.push_back(s[1] * 16);
    }
  }
  checkNorm(counts, std::vector<size_t>(counts.size(), 0), "lora 1B");
#endif
}
