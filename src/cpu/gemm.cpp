// Blocked single-precision GEMM in the GotoBLAS/BLIS style. For each block of NC columns and KC
// steps of K, op(B) is packed once into NR-wide panels shared by all threads; then each task packs
// an MC-row block of op(A) into MR-row panels and runs the register-tile micro-kernel over its
// group of B panels. Transposes are absorbed by the packing, so the micro-kernel only ever sees
// contiguous panels. See gemm_kernels.h for the packed formats and the kernel sets.
#include "gemm.h"

#include <algorithm>

#include "../memory.h"
#include "gemm_kernels.h"
#include "parallel.h"

namespace rlhf::cpu {
namespace gemm {
namespace {

// Cache blocking. It depends on the shape only, never on the thread count, so every element of C
// is summed in the same order whatever the number of threads (results are bitwise reproducible).
//   KC: steps per K-block; one packed B panel (KC x NR floats, 16 KiB) stays in L1 while the
//       task's A panels stream past it.
//   MC: rows per packed A block (MC x KC floats, 144 KiB), kept in L2 for every B panel of a task.
//   NC: columns per packed B block (KC x NC floats, up to 4 MiB), shared by the threads from L3.
constexpr int64_t kKC = 256;
constexpr int64_t kMC = 144;
constexpr int64_t kNC = 4096;
static_assert(kMC % kMR == 0 && kNC % kNR == 0, "blocks hold whole panels");

// A K-block step smaller than this (in flops) runs on one thread: waking the pool would cost more.
constexpr double kMinParallelFlops = 4e6;
// Tasks per thread in a step, so that a thread slowed by other work still finds some left.
constexpr int64_t kTasksPerThread = 4;

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t roundUp(int64_t x, int64_t unit) { return ceilDiv(x, unit) * unit; }

// Size of the blocks when n is cut into ceil(n / maxBlock) near-equal blocks, rounded up to unit.
int64_t evenBlock(int64_t n, int64_t maxBlock, int64_t unit) {
  return roundUp(ceilDiv(n, ceilDiv(n, maxBlock)), unit);
}

// fn(task, thread) for every task, on the pool when `parallel`, else inline on this thread.
template <typename Fn>
void runTasks(int64_t nTasks, bool parallel, const Fn& fn) {
  if (parallel) {
    parallelTasks(nTasks, fn);
  } else {
    for (int64_t t = 0; t < nTasks; ++t) fn(t, 0);
  }
}

// C := beta · C, for K == 0 or alpha == 0 (A and B are not read).
void scaleC(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  if (beta == 1.0f) return;
  parallelFor(M, std::max<int64_t>(1, (1 << 15) / N), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      float* c = C + i * ldc;
      if (beta == 0.0f) std::fill(c, c + N, 0.0f);
      else for (int64_t j = 0; j < N; ++j) c[j] *= beta;
    }
  });
}

// A partial tile (rows < MR or cols < NR at the bottom/right edge of C): the micro-kernel runs on a
// full MR x NR copy, so edge elements get exactly the arithmetic of interior ones.
void edgeTile(const KernelSet& kernels, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
              int64_t rows, int64_t cols, float alpha, float beta) {
  alignas(64) float tile[kMR * kNR] = {};
  if (beta != 0.0f) {
    for (int64_t r = 0; r < rows; ++r) std::copy(c + r * ldc, c + r * ldc + cols, tile + r * kNR);
  }
  kernels.micro(kc, a, b, tile, kNR, alpha, beta);
  for (int64_t r = 0; r < rows; ++r) std::copy(tile + r * kNR, tile + r * kNR + cols, c + r * ldc);
}

void portableMicro(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta) {
  float acc[kMR][kNR] = {};
  for (int64_t p = 0; p < kc; ++p, a += kMR, b += kNR) {
    for (int64_t r = 0; r < kMR; ++r) {
      for (int64_t j = 0; j < kNR; ++j) acc[r][j] += a[r] * b[j];
    }
  }
  for (int64_t r = 0; r < kMR; ++r) {
    float* row = c + r * ldc;
    for (int64_t j = 0; j < kNR; ++j) row[j] = beta == 0.0f ? alpha * acc[r][j] : alpha * acc[r][j] + beta * row[j];
  }
}

void portablePackA(bool transA, const float* a, int64_t lda, int64_t rows, int64_t kc, float* dst) {
  for (int64_t p = 0; p < kc; ++p) {
    float* d = dst + p * kMR;
    for (int64_t r = 0; r < rows; ++r) d[r] = transA ? a[p * lda + r] : a[r * lda + p];
    std::fill(d + rows, d + kMR, 0.0f);
  }
}

void portablePackB(bool transB, const float* b, int64_t ldb, int64_t cols, int64_t kc, float* dst) {
  for (int64_t p = 0; p < kc; ++p) {
    float* d = dst + p * kNR;
    if (transB) {
      for (int64_t j = 0; j < cols; ++j) d[j] = b[j * ldb + p];
    } else {
      std::copy(b + p * ldb, b + p * ldb + cols, d);
    }
    std::fill(d + cols, d + kNR, 0.0f);
  }
}

}  // namespace

const KernelSet& portableKernels() {
  static const KernelSet set{"portable", portableMicro, portablePackA, portablePackB};
  return set;
}

const KernelSet& bestKernels() {
  static const KernelSet& best = avx2Kernels() ? *avx2Kernels() : portableKernels();
  return best;
}

void sgemmWith(const KernelSet& kernels, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    scaleC(M, N, beta, C, ldc);
    return;
  }
  const int64_t mc = evenBlock(M, kMC, kMR);
  const int64_t nc = evenBlock(N, kNC, kNR);
  const int64_t kc = std::min(K, evenBlock(K, kKC, 8));
  const int64_t mBlocks = ceilDiv(M, mc);
  const int threads = insideParallelRegion() ? 1 : numThreads();
  // Scratch: one packed B block shared by all threads, one packed A block per thread.
  const int64_t aBlockFloats = std::min(mc, roundUp(M, kMR)) * kc;
  ScratchBuffer<float> packedB(static_cast<size_t>(std::min(nc, roundUp(N, kNR)) * kc));
  ScratchBuffer<float> packedA(static_cast<size_t>(threads * aBlockFloats));

  for (int64_t j0 = 0; j0 < N; j0 += nc) {
    const int64_t ncCur = std::min(nc, N - j0);
    const int64_t panels = ceilDiv(ncCur, kNR);
    for (int64_t p0 = 0; p0 < K; p0 += kc) {
      const int64_t kcCur = std::min(kc, K - p0);
      const float stepBeta = p0 == 0 ? beta : 1.0f;  // later K-blocks accumulate onto the first
      const bool parallel = threads > 1 && 2.0 * M * ncCur * kcCur >= kMinParallelFlops;

      // Pack op(B)[p0 : p0+kcCur, j0 : j0+ncCur] into NR-column panels, in one range per thread.
      const int64_t packTasks = parallel ? std::min<int64_t>(panels, threads) : 1;
      runTasks(packTasks, parallel, [&](int64_t t, int) {
        for (int64_t jp = t * panels / packTasks; jp < (t + 1) * panels / packTasks; ++jp) {
          const int64_t j = j0 + jp * kNR;
          const float* src = transB ? B + j * ldb + p0 : B + p0 * ldb + j;
          kernels.packB(transB, src, ldb, std::min(kNR, N - j), kcCur, packedB.data() + jp * kcCur * kNR);
        }
      });

      // Tasks: (block of mc rows) x (group of B panels). Groups split N when M alone gives too
      // few tasks (token chunks x vocabulary); each task packs its own rows of op(A).
      const int64_t groups =
          parallel ? std::clamp<int64_t>(ceilDiv(kTasksPerThread * threads, mBlocks), 1, panels) : 1;
      runTasks(mBlocks * groups, parallel, [&](int64_t task, int thread) {
        const int64_t i0 = (task / groups) * mc;
        const int64_t group = task % groups;
        const int64_t mcCur = std::min(mc, M - i0);
        float* pa = packedA.data() + thread * aBlockFloats;
        for (int64_t ir = 0; ir < mcCur; ir += kMR) {
          const int64_t i = i0 + ir;
          const float* src = transA ? A + p0 * lda + i : A + i * lda + p0;
          kernels.packA(transA, src, lda, std::min(kMR, M - i), kcCur, pa + ir * kcCur);
        }
        for (int64_t jp = group * panels / groups; jp < (group + 1) * panels / groups; ++jp) {
          const float* pb = packedB.data() + jp * kcCur * kNR;
          const int64_t j = j0 + jp * kNR;
          const int64_t cols = std::min(kNR, N - j);
          for (int64_t ir = 0; ir < mcCur; ir += kMR) {
            const int64_t rows = std::min(kMR, mcCur - ir);
            float* c = C + (i0 + ir) * ldc + j;
            if (rows == kMR && cols == kNR) kernels.micro(kcCur, pa + ir * kcCur, pb, c, ldc, alpha, stepBeta);
            else edgeTile(kernels, kcCur, pa + ir * kcCur, pb, c, ldc, rows, cols, alpha, stepBeta);
          }
        }
      });
    }
  }
}

}  // namespace gemm

void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm::sgemmWith(gemm::bestKernels(), transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace rlhf::cpu
