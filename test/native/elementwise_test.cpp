// addInto: CPU against float64, and CUDA against CPU (float32 and bfloat16) when a GPU is present.
#include "../../src/kernels.h"
#include "cuda_harness.h"
#include "harness.h"

TEST(add_into_cpu_matches_float64) {
  const int64_t n = 70001;  // several threads' ranges and a ragged tail
  auto dst = rlhf::test::randomNormals(n, 21, 2.0f);
  const auto src = rlhf::test::randomNormals(n, 22);
  std::vector<double> want(n);
  for (int64_t i = 0; i < n; ++i) want[i] = static_cast<double>(dst[i]) + src[i];
  rlhf::cpu::addInto({dst.data(), src.data(), n});
  CHECK_ALL_CLOSE("dst + src", dst.data(), want.data(), n, 1e-6, 1e-7);
}

#ifdef RLHF_WITH_CUDA
namespace {

// The CUDA kernel with storage type T on (bf16-rounded when T = bf16) inputs against the CPU kernel
// on the same values; bf16 also rounds the sum, hence the looser tolerance.
template <typename T>
void checkAddIntoParity(double rtol, double atol) {
  using namespace rlhf;
  using test::DeviceArray;
  const int64_t n = 100003;  // not a multiple of the block size
  auto dst = test::randomNormals(n, 23, 3.0f), src = test::randomNormals(n, 24);
  if constexpr (std::is_same_v<T, bf16>) {
    dst = test::roundToBf16(dst);
    src = test::roundToBf16(src);
  }
  DeviceArray<T> ddst(dst), dsrc(src);
  cpu::addInto({dst.data(), src.data(), n});
  cuda::addInto<T>({ddst.data(), dsrc.data(), n});
  CHECK_PARITY("dst", ddst.download(), dst, rtol, atol);
}

}  // namespace
#endif

TEST(add_into_cuda_matches_cpu_float32) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  rlhf::test::requireCuda();
  checkAddIntoParity<float>(1e-6, 1e-7);
#endif
}

TEST(add_into_cuda_matches_cpu_bfloat16) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  rlhf::test::requireCuda();
  checkAddIntoParity<rlhf::bf16>(1e-2, 1e-2);
#endif
}
