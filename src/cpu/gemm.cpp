#include "gemm.h"

#include <algorithm>

#include "../memory.h"
#include "parallel.h"

namespace rlhf::cpu {
namespace {

// Block sizes: a KC x NC panel of op(B) is packed once and reused by every row of op(A).
constexpr int64_t kKC = 256;
constexpr int64_t kNC = 512;
constexpr int64_t kMC = 64;

inline float elemA(const float* A, int64_t lda, bool transA, int64_t i, int64_t p) {
  return transA ? A[p * lda + i] : A[i * lda + p];
}

// Packs op(B)[p0:p0+kc, j0:j0+nc] row-major into dst (kc x nc).
void packB(const float* B, int64_t ldb, bool transB, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
           float* dst) {
  for (int64_t p = 0; p < kc; ++p) {
    float* row = dst + p * nc;
    if (!transB) {
      const float* src = B + (p0 + p) * ldb + j0;
      std::copy(src, src + nc, row);
    } else {
      for (int64_t j = 0; j < nc; ++j) row[j] = B[(j0 + j) * ldb + p0 + p];
    }
  }
}

}  // namespace

void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  // C := beta * C first, so every later panel just accumulates.
  parallelFor(M, 16, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      float* c = C + i * ldc;
      if (beta == 0.0f) std::fill(c, c + N, 0.0f);
      else if (beta != 1.0f) for (int64_t j = 0; j < N; ++j) c[j] *= beta;
    }
  });
  if (K <= 0 || alpha == 0.0f) return;

  for (int64_t j0 = 0; j0 < N; j0 += kNC) {
    const int64_t nc = std::min(kNC, N - j0);
    for (int64_t p0 = 0; p0 < K; p0 += kKC) {
      const int64_t kc = std::min(kKC, K - p0);
      ScratchBuffer<float> panel(static_cast<size_t>(kc * nc));
      packB(B, ldb, transB, p0, kc, j0, nc, panel.data());
      const int64_t blocks = (M + kMC - 1) / kMC;
      parallelTasks(blocks, [&](int64_t blk, int) {
        const int64_t i0 = blk * kMC, i1 = std::min(M, i0 + kMC);
        for (int64_t i = i0; i < i1; ++i) {
          float* c = C + i * ldc + j0;
          for (int64_t p = 0; p < kc; ++p) {
            const float a = alpha * elemA(A, lda, transA, i, p0 + p);
            const float* b = panel.data() + p * nc;
            for (int64_t j = 0; j < nc; ++j) c[j] += a * b[j];
          }
        }
      });
    }
  }
}

}  // namespace rlhf::cpu
