// rmsNorm / rmsNormBackward: CUDA against the CPU kernels (float32 and bfloat16) when a GPU is
// present. The shapes cover both row mappings (a warp per row up to 128 packs, a block per row
// beyond), the dWeight sums kept in registers and the ones spilled to the partial rows (over 2048
// packs per row), more rows than the backward's persistent grid has slots, odd sizes and
// misaligned pointers (element-wise paths).
#include <cmath>
#include <string>
#include <vector>

#include "../../src/kernels.h"
#include "cuda_harness.h"
#include "harness.h"

#ifdef RLHF_WITH_CUDA
namespace {

using namespace rlhf;

struct Tolerance {
  double rtol;
  double atolScale;  // atol = atolScale · max |expected|
};

// The forward, then the backward with dX overwritten or accumulated and dWeight accumulated into
// a non-zero tensor or not wanted. `offset` shifts the T tensors' device pointers (1: misaligned).
template <typename T>
void checkRmsNorm(int64_t rows, int64_t dim, size_t offset, Tolerance tol) {
  using test::OffsetDeviceArray;
  const std::string shape =
      " [rows " + std::to_string(rows) + ", D " + std::to_string(dim) + ", offset " + std::to_string(offset) + "]";
  const float eps = 1e-5f;
  const auto x = test::storedAs<T>(test::randomNormals(rows * dim, 21, 2.0f));
  const auto weight = test::storedAs<T>(test::randomNormals(dim, 22));
  const auto dY = test::storedAs<T>(test::randomNormals(rows * dim, 23));
  const auto dX0 = test::storedAs<T>(test::randomNormals(rows * dim, 24));
  const auto dWeight0 = test::randomNormals(dim, 25);

  std::vector<float> y(rows * dim), rstd(rows);
  cpu::rmsNorm({x.data(), weight.data(), y.data(), rstd.data(), rows, dim, eps});
  OffsetDeviceArray<T> gX(x, offset), gW(weight, offset), gY(rows * dim, offset), gDY(dY, offset);
  test::DeviceArray<float> gRstd(rows);
  cuda::rmsNorm<T>({gX.data(), gW.data(), gY.data(), gRstd.data(), rows, dim, eps});
  CHECK_PARITY("y" + shape, gY.download(), y, tol.rtol, tol.atolScale * test::maxAbs(y));
  // rstd is float32 whatever T; its sum of squares is float32 on the GPU, float64 on the CPU.
  CHECK_PARITY("rstd" + shape, gRstd.download(), rstd, 1e-5, 0.0);

  for (const bool accumulate : {false, true}) {
    for (const bool wantWeight : {true, false}) {
      const std::string variant =
          shape + (accumulate ? " accumulate" : " overwrite") + (wantWeight ? " dWeight" : " no dWeight");
      std::vector<float> dX = dX0, dWeight = dWeight0;
      // Both backends read the CPU's rstd, so that the backward is compared on its own.
      cpu::rmsNormBackward({dY.data(), x.data(), weight.data(), rstd.data(), dX.data(),
                            wantWeight ? dWeight.data() : nullptr, rows, dim, accumulate});
      // Accumulated into dX0, or overwriting NaNs.
      OffsetDeviceArray<T> gDX(accumulate ? dX0 : std::vector<float>(rows * dim, std::nanf("")), offset);
      test::DeviceArray<float> gRstdCpu(rstd), gDWeight(dWeight0);
      cuda::rmsNormBackward<T>({gDY.data(), gX.data(), gW.data(), gRstdCpu.data(), gDX.data(),
                                wantWeight ? gDWeight.data() : nullptr, rows, dim, accumulate});
      CHECK_PARITY("dX" + variant, gDX.download(), dX, tol.rtol, tol.atolScale * test::maxAbs(dX));
      // Untouched when not wanted.
      CHECK_PARITY("dWeight" + variant, gDWeight.download(), dWeight, tol.rtol, tol.atolScale * test::maxAbs(dWeight));
    }
  }
}

template <typename T>
void checkRmsNormShapes(Tolerance tol) {
  checkRmsNorm<T>(1, 5, 0, tol);         // a single row of 5
  checkRmsNorm<T>(37, 259, 0, tol);      // odd D: element-wise, a block per row
  checkRmsNorm<T>(300, 128, 0, tol);     // Qwen3 q/k norm rows: a warp per row, 16-byte packs
  checkRmsNorm<T>(300, 128, 1, tol);     // the same misaligned
  checkRmsNorm<T>(5, 20000, 0, tol);     // over 2048 packs: dWeight sums spill to the partial rows
  checkRmsNorm<T>(16384, 128, 0, tol);   // more warp rows than the persistent grid's slots
  checkRmsNorm<T>(2048, 2048, 0, tol);   // a 1B model's hidden states: more rows than block slots
}

}  // namespace
#endif

TEST(rmsnorm_cuda_matches_cpu_float32) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  rlhf::test::requireCuda();
  // The row sums (Σ x², Σ g·w·x) and the dWeight column sums are float32 in another order than the
  // CPU's float64 sums; where the terms cancel, the difference is relative to the result's scale.
  checkRmsNormShapes<float>({1e-5, 1e-5});
#endif
}

TEST(rmsnorm_cuda_matches_cpu_bfloat16) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  rlhf::test::requireCuda();
  checkRmsNormShapes<rlhf::bf16>({1e-2, 1e-2});
#endif
}
