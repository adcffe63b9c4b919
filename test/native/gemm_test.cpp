// sgemm against a naive float64 triple loop: every transpose combination, shapes that hit each
// edge-tile path (sizes around the 6 x 16 register tile and the cache blocks), alpha/beta, K = 0,
// submatrix views (leading dimensions larger than a row), every kernel set this CPU can run, and
// bitwise reproducibility across thread counts.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "../../src/cpu/gemm.h"
#include "../../src/cpu/gemm_kernels.h"
#include "../../src/cpu/parallel.h"
#include "../../src/memory.h"
#include "harness.h"

namespace {

using rlhf::cpu::gemm::KernelSet;

struct Problem {
  bool transA, transB;
  int64_t M, N, K;
  float alpha, beta;
  int64_t pad = 0;  // extra elements per stored row of A, B and C (a view into a wider matrix)
};

// The stored operands of a problem: A is [M, K] or [K, M], B is [K, N] or [N, K], C is [M, N],
// each row followed by `pad` elements that must never be read (A, B) or written (C).
struct Operands {
  int64_t lda, ldb, ldc;
  std::vector<float> A, B, C;
};

Operands makeOperands(const Problem& p, uint32_t seed) {
  Operands o;
  const int64_t aRows = p.transA ? p.K : p.M, aCols = p.transA ? p.M : p.K;
  const int64_t bRows = p.transB ? p.N : p.K, bCols = p.transB ? p.K : p.N;
  o.lda = aCols + p.pad;
  o.ldb = bCols + p.pad;
  o.ldc = p.N + p.pad;
  o.A = rlhf::test::randomNormals(aRows * o.lda, seed);
  o.B = rlhf::test::randomNormals(bRows * o.ldb, seed + 1);
  o.C = rlhf::test::randomNormals(p.M * o.ldc, seed + 2);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // Padding holds NaN: any read of it would poison the result.
  for (int64_t r = 0; r < aRows; ++r) std::fill(o.A.begin() + r * o.lda + aCols, o.A.begin() + (r + 1) * o.lda, nan);
  for (int64_t r = 0; r < bRows; ++r) std::fill(o.B.begin() + r * o.ldb + bCols, o.B.begin() + (r + 1) * o.ldb, nan);
  // beta == 0 must ignore whatever C holds.
  if (p.beta == 0.0f) std::fill(o.C.begin(), o.C.end(), nan);
  return o;
}

// alpha · op(A) · op(B) + beta · C in float64, as C's [M, N] elements (C's padding excluded).
std::vector<double> reference(const Problem& p, const Operands& o) {
  std::vector<double> want(p.M * p.N);
  for (int64_t i = 0; i < p.M; ++i) {
    for (int64_t j = 0; j < p.N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < p.K; ++k) {
        const double a = p.transA ? o.A[k * o.lda + i] : o.A[i * o.lda + k];
        const double b = p.transB ? o.B[j * o.ldb + k] : o.B[k * o.ldb + j];
        s += a * b;
      }
      const double c = p.beta == 0.0f ? 0.0 : p.beta * static_cast<double>(o.C[i * o.ldc + j]);
      want[i * p.N + j] = p.alpha * s + c;
    }
  }
  return want;
}

std::string describe(const Problem& p, const char* kernels) {
  return std::string(kernels) + " transA=" + std::to_string(p.transA) + " transB=" + std::to_string(p.transB) +
         " " + std::to_string(p.M) + "x" + std::to_string(p.N) + "x" + std::to_string(p.K) +
         " alpha=" + std::to_string(p.alpha) + " beta=" + std::to_string(p.beta) + " pad=" + std::to_string(p.pad);
}

// Runs one problem through `kernels` (null: the public sgemm) and checks C, including that the
// padding after each row of C still holds its original values.
void checkProblem(const Problem& p, const KernelSet* kernels) {
  Operands o = makeOperands(p, static_cast<uint32_t>(p.M * 7919 + p.N * 104729 + p.K));
  const std::vector<double> want = reference(p, o);
  const std::vector<float> before = o.C;
  if (kernels) {
    rlhf::cpu::gemm::sgemmWith(*kernels, p.transA, p.transB, p.M, p.N, p.K, p.alpha, o.A.data(), o.lda, o.B.data(),
                               o.ldb, p.beta, o.C.data(), o.ldc);
  } else {
    rlhf::cpu::sgemm(p.transA, p.transB, p.M, p.N, p.K, p.alpha, o.A.data(), o.lda, o.B.data(), o.ldb, p.beta,
                     o.C.data(), o.ldc);
  }
  std::vector<float> got(p.M * p.N);
  bool padIntact = true;
  for (int64_t i = 0; i < p.M; ++i) {
    std::copy(o.C.begin() + i * o.ldc, o.C.begin() + i * o.ldc + p.N, got.begin() + i * p.N);
    padIntact = padIntact && std::memcmp(o.C.data() + i * o.ldc + p.N, before.data() + i * o.ldc + p.N,
                                         p.pad * sizeof(float)) == 0;
  }
  const std::string label = describe(p, kernels ? kernels->name : "sgemm");
  // float32 sums of K products of unit normals: error grows like sqrt(K) ulps of the result.
  const double tol = 2e-6 * std::sqrt(static_cast<double>(p.K) + 1.0) + 1e-6;
  CHECK_ALL_CLOSE(label.c_str(), got.data(), want.data(), want.size(), tol, tol);
  if (!padIntact) rlhf::test::reportFailure(__FILE__, __LINE__, label + ": wrote into C's padding");
}

// Every kernel set this machine can run, and the public entry point.
std::vector<const KernelSet*> kernelSets() {
  std::vector<const KernelSet*> sets{nullptr, &rlhf::cpu::gemm::portableKernels()};
  if (const KernelSet* avx2 = rlhf::cpu::gemm::avx2Kernels()) sets.push_back(avx2);
  return sets;
}

// Shapes around the 6 x 16 register tile (MR ± 1, NR ± 1), the K-block (KC = 256, KC + 1) and
// the row block (MC = 144), K beyond the 16 K-blocks packed ahead for small M, plus M, N or K of 1.
const int64_t kShapes[][3] = {
    {1, 1, 1},    {7, 259, 3},  {5, 15, 8},    {6, 16, 8},   {7, 17, 9},    {11, 31, 1},
    {1, 70, 40},  {70, 1, 40},  {13, 33, 257}, {33, 17, 130}, {64, 64, 64}, {5, 600, 300},
    {145, 47, 20}, {290, 100, 513}, {7, 20, 4200},
};

}  // namespace

TEST(sgemm_matches_naive_float64_every_transpose_and_edge_tile) {
  for (const KernelSet* kernels : kernelSets()) {
    for (const auto& s : kShapes) {
      for (int t = 0; t < 4; ++t) {
        checkProblem({(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], 1.0f, 0.0f}, kernels);
        checkProblem({(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], -0.75f, 1.0f}, kernels);
        checkProblem({(t & 1) != 0, (t & 2) != 0, s[0], s[1], s[2], 1.5f, 0.5f}, kernels);
      }
    }
  }
}

TEST(sgemm_submatrix_views_leave_padding_untouched) {
  for (const KernelSet* kernels : kernelSets()) {
    for (int t = 0; t < 4; ++t) {
      checkProblem({(t & 1) != 0, (t & 2) != 0, 19, 37, 29, 1.0f, 0.0f, 5}, kernels);
      checkProblem({(t & 1) != 0, (t & 2) != 0, 150, 70, 300, 2.0f, 0.5f, 3}, kernels);
    }
  }
}

TEST(sgemm_crosses_column_blocks) {
  // N > 2048 takes several packed-B column blocks (M > 144) or panel groups (M <= 144).
  for (const KernelSet* kernels : kernelSets()) {
    checkProblem({false, true, 150, 2100, 9, 1.0f, 0.0f}, kernels);
    checkProblem({true, false, 150, 2100, 9, 1.0f, 1.0f}, kernels);
    checkProblem({false, true, 7, 4100, 9, 1.0f, 0.0f}, kernels);
    checkProblem({true, false, 7, 4100, 9, 1.0f, 1.0f}, kernels);
  }
}

TEST(sgemm_k_zero_scales_c_by_beta) {
  for (const float beta : {0.0f, 1.0f, 0.5f}) {
    for (const KernelSet* kernels : kernelSets()) checkProblem({false, true, 9, 21, 0, 1.0f, beta, 2}, kernels);
  }
}

TEST(sgemm_is_bitwise_identical_for_any_thread_count) {
  const int saved = rlhf::cpu::numThreads();
  // Large enough that sgemm threads each K-block step: several row blocks (M > 144), several
  // K-blocks (K > 256), and (64 x 5000) a single row block whose columns are split over tasks.
  const Problem problems[] = {
      {false, true, 300, 517, 600, 1.0f, 0.0f},
      {true, false, 300, 517, 600, 0.5f, 1.0f},
      {false, true, 64, 5000, 300, 1.0f, 0.0f},
      {true, true, 200, 100, 1000, 1.0f, 0.5f},
  };
  for (const Problem& p : problems) {
    std::vector<std::vector<float>> results;
    for (const int threads : {1, 2, 3}) {
      rlhf::cpu::setNumThreads(threads);
      Operands o = makeOperands(p, 11);
      rlhf::cpu::sgemm(p.transA, p.transB, p.M, p.N, p.K, p.alpha, o.A.data(), o.lda, o.B.data(), o.ldb, p.beta,
                       o.C.data(), o.ldc);
      results.push_back(o.C);
    }
    // And called from inside a parallel region, where it runs on the calling thread alone.
    Operands o = makeOperands(p, 11);
    rlhf::cpu::parallelTasks(2, [&](int64_t task, int) {
      if (task == 0) {
        rlhf::cpu::sgemm(p.transA, p.transB, p.M, p.N, p.K, p.alpha, o.A.data(), o.lda, o.B.data(), o.ldb, p.beta,
                         o.C.data(), o.ldc);
      }
    });
    results.push_back(o.C);
    for (size_t r = 1; r < results.size(); ++r) {
      CHECK(std::memcmp(results[r].data(), results[0].data(), results[0].size() * sizeof(float)) == 0);
    }
  }
  rlhf::cpu::setNumThreads(saved);
}

TEST(sgemm_scratch_is_freed_and_bounded) {
  // A wide, shallow product: the packing scratch must stay far below the size of C.
  const int64_t M = 1000, N = 3000, K = 40;
  auto A = rlhf::test::randomNormals(M * K, 5);
  auto B = rlhf::test::randomNormals(N * K, 6);
  std::vector<float> C(M * N);
  const auto before = rlhf::memoryStats();
  rlhf::resetPeakBytes();
  rlhf::cpu::sgemm(false, true, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, C.data(), N);
  const auto after = rlhf::memoryStats();
  CHECK(after.liveBytes == before.liveBytes);
  CHECK(after.liveBuffers == before.liveBuffers);
  CHECK(after.peakBytes - before.liveBytes < static_cast<int64_t>(M * N * sizeof(float)) / 8);
}
