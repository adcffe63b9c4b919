// siluMul: CPU against float64, and CUDA against CPU when a GPU is present.
#include <cmath>

#include "../../src/kernels.h"
#include "harness.h"
#ifdef RLHF_WITH_CUDA
#include "../../cuda/kernels_cuda.h"
#endif

TEST(silu_mul_cpu_matches_float64) {
  const int64_t n = 1031;
  auto gate = rlhf::test::randomNormals(n, 4, 3.0f);
  auto up = rlhf::test::randomNormals(n, 5);
  std::vector<float> out(n);
  rlhf::cpu::siluMul({gate.data(), up.data(), out.data(), n});
  std::vector<double> want(n);
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    want[i] = g / (1.0 + std::exp(-g)) * up[i];
  }
  CHECK_ALL_CLOSE("silu(gate)*up", out.data(), want.data(), n, 1e-5, 1e-6);
}

TEST(silu_mul_cuda_matches_cpu) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  const rlhf::cuda::DeviceInfo info = rlhf::cuda::deviceInfo();
  if (info.deviceCount == 0) SKIP("no CUDA device: " + info.error);
  const int64_t n = 100003;
  auto gate = rlhf::test::randomNormals(n, 6, 3.0f);
  auto up = rlhf::test::randomNormals(n, 7);
  auto dOut = rlhf::test::randomNormals(n, 8);
  std::vector<float> out(n), dGate(n), dUp(n);
  rlhf::cpu::siluMul({gate.data(), up.data(), out.data(), n});
  rlhf::cpu::siluMulBackward({gate.data(), up.data(), dOut.data(), dGate.data(), dUp.data(), n});
  const size_t bytes = n * sizeof(float);
  float* d[6];
  for (auto& p : d) p = static_cast<float*>(rlhf::cuda::deviceAlloc(bytes));
  rlhf::cuda::copyToDevice(d[0], gate.data(), bytes);
  rlhf::cuda::copyToDevice(d[1], up.data(), bytes);
  rlhf::cuda::copyToDevice(d[2], dOut.data(), bytes);
  rlhf::cuda::siluMul({d[0], d[1], d[3], n});
  rlhf::cuda::siluMulBackward({d[0], d[1], d[2], d[4], d[5], n});
  std::vector<float> gOut(n), gGate(n), gUp(n);
  rlhf::cuda::copyToHost(gOut.data(), d[3], bytes);
  rlhf::cuda::copyToHost(gGate.data(), d[4], bytes);
  rlhf::cuda::copyToHost(gUp.data(), d[5], bytes);
  for (auto& p : d) rlhf::cuda::deviceFree(p);
  std::vector<double> want(out.begin(), out.end()), wantGate(dGate.begin(), dGate.end()), wantUp(dUp.begin(), dUp.end());
  CHECK_ALL_CLOSE("cuda out", gOut.data(), want.data(), n, 1e-5, 1e-6);
  CHECK_ALL_CLOSE("cuda dGate", gGate.data(), wantGate.data(), n, 1e-5, 1e-6);
  CHECK_ALL_CLOSE("cuda dUp", gUp.data(), wantUp.data(), n, 1e-5, 1e-6);
#endif
}
