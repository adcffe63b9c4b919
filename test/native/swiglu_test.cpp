// siluMul: CPU against float64, and CUDA against CPU (float32 and bfloat16) when a GPU is present.
#include <cmath>

#include "../../src/kernels.h"
#include "cuda_harness.h"
#include "harness.h"

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

#ifdef RLHF_WITH_CUDA
namespace {

// Runs the CUDA kernels with storage type T on (bf16-rounded when T = bf16) inputs and compares
// with the CPU kernels on the same values.
template <typename T>
void checkSiluMulParity(double rtol, double atol) {
  using namespace rlhf;
  using test::DeviceArray;
  const int64_t n = 100003;  // not a multiple of any block size
  auto gate = test::randomNormals(n, 6, 3.0f), up = test::randomNormals(n, 7), dOut = test::randomNormals(n, 8);
  if constexpr (std::is_same_v<T, bf16>) {
    gate = test::roundToBf16(gate);
    up = test::roundToBf16(up);
    dOut = test::roundToBf16(dOut);
  }
  std::vector<float> out(n), dGate(n), dUp(n);
  cpu::siluMul({gate.data(), up.data(), out.data(), n});
  cpu::siluMulBackward({gate.data(), up.data(), dOut.data(), dGate.data(), dUp.data(), n});

  DeviceArray<T> dg(gate), du(up), dd(dOut), dout(n), ddGate(n), ddUp(n);
  cuda::siluMul<T>({dg.data(), du.data(), dout.data(), n});
  cuda::siluMulBackward<T>({dg.data(), du.data(), dd.data(), ddGate.data(), ddUp.data(), n});
  CHECK_PARITY("out", dout.download(), out, rtol, atol);
  CHECK_PARITY("dGate", ddGate.download(), dGate, rtol, atol);
  CHECK_PARITY("dUp", ddUp.download(), dUp, rtol, atol);
}

}  // namespace
#endif

TEST(silu_mul_cuda_matches_cpu_float32) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  rlhf::test::requireCuda();
  checkSiluMulParity<float>(1e-5, 1e-6);
#endif
}

TEST(silu_mul_cuda_matches_cpu_bfloat16) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  rlhf::test::requireCuda();
  checkSiluMulParity<rlhf::bf16>(1e-2, 1e-2);
#endif
}
