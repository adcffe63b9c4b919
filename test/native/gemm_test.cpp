// sgemm against a naive float64 triple loop, every transpose combination, odd shapes.
#include "../../src/cpu/gemm.h"
#include "harness.h"

namespace {

void checkGemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, float beta) {
  auto A = rlhf::test::randomNormals(M * K, 1);
  auto B = rlhf::test::randomNormals(K * N, 2);
  auto C = rlhf::test::randomNormals(M * N, 3);
  std::vector<double> want(M * N);
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t p = 0; p < K; ++p) {
        const double a = transA ? A[p * M + i] : A[i * K + p];
        const double b = transB ? B[j * K + p] : B[p * N + j];
        s += a * b;
      }
      want[i * N + j] = alpha * s + beta * C[i * N + j];
    }
  }
  rlhf::cpu::sgemm(transA, transB, M, N, K, alpha, A.data(), transA ? M : K, B.data(), transB ? K : N, beta,
                   C.data(), N);
  CHECK_ALL_CLOSE("C", C.data(), want.data(), want.size(), 1e-4, 1e-4);
}

}  // namespace

TEST(sgemm_matches_naive_float64) {
  const int64_t shapes[][3] = {{1, 1, 1}, {7, 259, 3}, {33, 17, 130}, {64, 64, 64}, {5, 600, 300}};
  for (const auto& s : shapes) {
    for (int t = 0; t < 4; ++t) {
      checkGemm(t & 1, t & 2, s[0], s[1], s[2], 1.0f, 0.0f);
      checkGemm(t & 1, t & 2, s[0], s[1], s[2], 0.5f, 1.0f);
    }
  }
}
