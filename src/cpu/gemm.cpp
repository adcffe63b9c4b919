// Blocked single-precision GEMM in the GotoBLAS/BLIS style. op(A) is packed in MC-row blocks of
// MR-row panels, op(B) in NR-column panels, KC steps of K at a time; the register-tile micro-kernel
// multiplies one A panel by one B panel. Transposes are absorbed by the packing, so the
// micro-kernel only ever reads contiguous panels. See gemm_kernels.h for formats and kernel sets.
//
// Two schedules, both with tasks = (block of rows) x (group of B panels) over the thread pool:
//   - M <= MC (one row block: token chunks x vocabulary, attention blocks, LoRA on few tokens):
//     op(A) is packed ahead for up to 16 K-blocks, then each task packs its own B panels and
//     walks those K-blocks, so one dispatch covers K = 4096 and no B panel is packed twice.
//   - otherwise, per (NC columns, KC steps) block, the threads first pack that block of op(B)
//     together, then share it: each B element is packed once, not once per row block.
// Every element of C gets the same arithmetic either way (same packing, same K-blocks, same
// micro-kernel), so the schedule and the thread count never change the result bit for bit.
#include "gemm.h"

#include <algorithm>

#include "../int_math.h"
#include "../memory.h"
#include "gemm_kernels.h"
#include "parallel.h"

namespace rlhf::cpu {
namespace gemm {
namespace {

// Cache blocking. It depends on the shape only, never on the thread count.
//   KC: steps per K-block; one packed B panel (KC x NR floats, 16 KiB) stays in L1 while the
//       task's A panels stream past it.
//   MC: rows per packed A block (MC x KC floats, 144 KiB), kept in L2 for every B panel of a task.
//   NC: columns per shared packed B block (KC x NC floats, 2 MiB), read by the threads from L3;
//       also the most columns one task sweeps per K-block.
constexpr int64_t kKC = 256;
constexpr int64_t kMC = 144;
constexpr int64_t kNC = 2048;
// When M <= MC: K-blocks of op(A) packed ahead at once (MC x 16 x KC floats, 2.25 MiB at most),
// and B panels packed together per call, so that each row of a [K, N] B is read 256 bytes at a time.
constexpr int64_t kChunkBlocks = 16;
constexpr int64_t kSlabPanels = 4;
static_assert(kMC % kMR == 0 && kNC % kNR == 0, "blocks hold whole panels");

// A dispatch with less work than this (1 MFLOP, ~10 us on one core) runs on one thread: below it,
// handing tasks to the pool (a spinning worker picks a job up within ~1 us, see parallel.cpp) and
// splitting the packing cost more than the second core saves.
constexpr double kMinParallelFlops = 1e6;
// Likewise for packing a shared block of op(A) or op(B) (in elements; ~0.1 ms of copying).
constexpr int64_t kMinParallelPack = 1 << 18;
// Tasks per thread in a dispatch, so that a thread slowed by other work still finds some left.
constexpr int64_t kTasksPerThread = 4;


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

// One sgemm call: its operands and the packing and multiplication steps both schedules use.
struct Gemm {
  const KernelSet& kernels;
  bool transA, transB;
  int64_t M, N, K;
  float alpha;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float beta;
  float* C;
  int64_t ldc;

  // Packs op(A)[i0 : i0+rows, p0 : p0+kc] as A panels (rows rounded up to MR) into dst.
  void packABlock(int64_t i0, int64_t rows, int64_t p0, int64_t kc, float* dst) const {
    for (int64_t r = 0; r < rows; r += kMR) {
      const int64_t i = i0 + r;
      kernels.packA(transA, transA ? A + p0 * lda + i : A + i * lda + p0, lda, std::min(kMR, M - i), kc,
                    dst + r * kc);
    }
  }

  // Packs op(B)[p0 : p0+kc, j : j+cols] as B panels (columns past N as zeros) into dst.
  void packBPanels(int64_t j, int64_t cols, int64_t p0, int64_t kc, float* dst) const {
    kernels.packB(transB, transB ? B + j * ldb + p0 : B + p0 * ldb + j, ldb, std::min(cols, N - j), kc, dst);
  }

  // C[i0 : i0+rows, j : j+NR] = alpha · (A block · B panel) + beta · C, clipped to C's edges;
  // beta is the caller's for the first K-block and 1 for the later ones, which accumulate.
  void multiplyPanel(const float* a, int64_t i0, int64_t rows, const float* b, int64_t j, int64_t kc,
                     float stepBeta) const {
    const int64_t cols = std::min(kNR, N - j);
    for (int64_t r = 0; r < rows; r += kMR) {
      float* c = C + (i0 + r) * ldc + j;
      const int64_t tileRows = std::min(kMR, rows - r);
      if (tileRows == kMR && cols == kNR) kernels.micro(kc, a + r * kc, b, c, ldc, alpha, stepBeta);
      else edgeTile(kernels, kc, a + r * kc, b, c, ldc, tileRows, cols, alpha, stepBeta);
    }
  }
};

// Groups of B panels per row block: at least `wanted`, each at most NC columns, at most one per panel.
int64_t panelGroups(int64_t panels, int64_t wanted) {
  return std::min(panels, std::max(ceilDiv(panels * kNR, kNC), wanted));
}

// M <= MC: op(A) is packed ahead (all M rows, a chunk of kChunkBlocks K-blocks at a time), then
// one dispatch per chunk: tasks are groups of B panels, each packing its panels a slab at a time
// and multiplying them by the shared packed A. No B panel is packed twice.
void singleRowBlock(const Gemm& g, int64_t kc, int threads) {
  const bool parallel = threads > 1 && 2.0 * g.M * g.N * g.K >= kMinParallelFlops;
  const int64_t panels = ceilDiv(g.N, kNR);
  const int64_t groups = panelGroups(panels, parallel ? kTasksPerThread * threads : 1);
  const int64_t rows = roundUp(g.M, kMR);
  const int64_t chunk = std::min(g.K, kChunkBlocks * kc);
  const int64_t slabFloats = kSlabPanels * kc * kNR;
  ScratchBuffer<float> packedA(static_cast<size_t>(rows * chunk));
  ScratchBuffer<float> packedB(static_cast<size_t>(threads * slabFloats));
  for (int64_t k0 = 0; k0 < g.K; k0 += chunk) {
    const int64_t kEnd = std::min(g.K, k0 + chunk);
    const bool parallelPack = parallel && rows * (kEnd - k0) >= kMinParallelPack;
    runTasks(ceilDiv(kEnd - k0, kc), parallelPack, [&](int64_t block, int) {
      const int64_t p0 = k0 + block * kc;
      g.packABlock(0, g.M, p0, std::min(kc, kEnd - p0), packedA.data() + rows * (p0 - k0));
    });
    runTasks(groups, parallel, [&](int64_t group, int thread) {
      float* pb = packedB.data() + thread * slabFloats;
      const int64_t jpEnd = (group + 1) * panels / groups;
      for (int64_t p0 = k0; p0 < kEnd; p0 += kc) {
        const int64_t kcCur = std::min(kc, kEnd - p0);
        const float stepBeta = p0 == 0 ? g.beta : 1.0f;
        const float* pa = packedA.data() + rows * (p0 - k0);
        for (int64_t jp0 = group * panels / groups; jp0 < jpEnd; jp0 += kSlabPanels) {
          const int64_t slab = std::min(kSlabPanels, jpEnd - jp0);
          g.packBPanels(jp0 * kNR, slab * kNR, p0, kcCur, pb);
          for (int64_t q = 0; q < slab; ++q) {
            g.multiplyPanel(pa, 0, g.M, pb + q * kcCur * kNR, (jp0 + q) * kNR, kcCur, stepBeta);
          }
        }
      }
    });
  }
}

// M > MC: per (NC columns, KC steps) block, pack that block of op(B) once (split over the
// threads), then tasks = (row block) x (group of its panels), each packing its rows of op(A).
void sharedPackedB(const Gemm& g, int64_t kc, int threads) {
  const int64_t mc = evenBlock(g.M, kMC, kMR);
  const int64_t nc = evenBlock(g.N, kNC, kNR);
  const int64_t mBlocks = ceilDiv(g.M, mc);
  ScratchBuffer<float> packedB(static_cast<size_t>(std::min(nc, roundUp(g.N, kNR)) * kc));
  ScratchBuffer<float> packedA(static_cast<size_t>(threads * mc * kc));
  for (int64_t j0 = 0; j0 < g.N; j0 += nc) {
    const int64_t ncCur = std::min(nc, g.N - j0);
    const int64_t panels = ceilDiv(ncCur, kNR);
    for (int64_t p0 = 0; p0 < g.K; p0 += kc) {
      const int64_t kcCur = std::min(kc, g.K - p0);
      const float stepBeta = p0 == 0 ? g.beta : 1.0f;
      const bool parallel = threads > 1 && 2.0 * g.M * ncCur * kcCur >= kMinParallelFlops;
      const bool parallelPack = parallel && kcCur * ncCur >= kMinParallelPack;
      const int64_t packTasks = parallelPack ? std::min<int64_t>(panels, threads) : 1;
      runTasks(packTasks, parallelPack, [&](int64_t t, int) {
        const int64_t jp0 = t * panels / packTasks, jp1 = (t + 1) * panels / packTasks;
        g.packBPanels(j0 + jp0 * kNR, (jp1 - jp0) * kNR, p0, kcCur, packedB.data() + jp0 * kcCur * kNR);
      });
      const int64_t groups = parallel ? panelGroups(panels, ceilDiv(kTasksPerThread * threads, mBlocks)) : 1;
      runTasks(mBlocks * groups, parallel, [&](int64_t task, int thread) {
        const int64_t i0 = (task / groups) * mc;
        const int64_t group = task % groups;
        const int64_t rows = std::min(mc, g.M - i0);
        float* pa = packedA.data() + thread * mc * kc;
        g.packABlock(i0, rows, p0, kcCur, pa);
        for (int64_t jp = group * panels / groups; jp < (group + 1) * panels / groups; ++jp) {
          g.multiplyPanel(pa, i0, rows, packedB.data() + jp * kcCur * kNR, j0 + jp * kNR, kcCur, stepBeta);
        }
      });
    }
  }
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
  const int64_t panels = ceilDiv(cols, kNR);
  for (int64_t p = 0; p < kc; ++p) {
    // One row of op(B) across all the panels: contiguous when B is [K, N].
    for (int64_t q = 0; q < panels; ++q) {
      float* d = dst + q * kc * kNR + p * kNR;
      const int64_t j0 = q * kNR, n = std::min(kNR, cols - j0);
      if (transB) {
        for (int64_t j = 0; j < n; ++j) d[j] = b[(j0 + j) * ldb + p];
      } else {
        std::copy(b + p * ldb + j0, b + p * ldb + j0 + n, d);
      }
      std::fill(d + n, d + kNR, 0.0f);
    }
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
  const Gemm g{kernels, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
  const int64_t kc = std::min(K, evenBlock(K, kKC, 8));
  const int threads = insideParallelRegion() ? 1 : numThreads();
  if (M <= kMC) singleRowBlock(g, kc, threads);
  else sharedPackedB(g, kc, threads);
}

}  // namespace gemm

void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm::sgemmWith(gemm::bestKernels(), transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

const char* sgemmKernelName() { return gemm::bestKernels().name; }

}  // namespace rlhf::cpu
