// Batched matmul over the shared sgemm, and its backward expressed as two more matmuls.
#include "../kernels.h"
#include "gemm.h"
#include "parallel.h"

namespace rlhf::cpu {
namespace {

// sgemm keeps a product of fewer multiply-adds than this on one thread (waking the pool would cost
// more than it saves). A batch of such items that adds up to more is spread over the threads
// instead, each item's sgemm running on its own thread; a batch that adds up to less stays here.
constexpr double kSmallMacs = 1 << 22;

bool spreadOverBatch(int64_t batch, int64_t m, int64_t n, int64_t k) {
  const double itemMacs = static_cast<double>(m) * n * k;
  return batch > 1 && itemMacs < kSmallMacs && itemMacs * batch >= kSmallMacs;
}

// fn(item) for every batch item: across the thread pool when `spread`, else in order here.
template <typename Fn>
void forEachItem(int64_t batch, bool spread, const Fn& fn) {
  if (spread) {
    parallelTasks(batch, [&](int64_t i, int) { fn(i); });
  } else {
    for (int64_t i = 0; i < batch; ++i) fn(i);
  }
}

}  // namespace

void matmul(const MatmulArgs& p) {
  // Stored layouts: A is [M, K] (or [K, M] when transA), B is [K, N] (or [N, K] when transB).
  const int64_t lda = p.transA ? p.m : p.k;
  const int64_t ldb = p.transB ? p.k : p.n;
  forEachItem(p.batch, spreadOverBatch(p.batch, p.m, p.n, p.k), [&](int64_t i) {
    sgemm(p.transA, p.transB, p.m, p.n, p.k, p.alpha, p.a + i * p.strideA, lda, p.b + i * p.strideB, ldb,
          p.beta, p.c + i * p.strideC, p.n);
  });
}

void matmulBackward(const MatmulBackwardArgs& p) {
  const int64_t lda = p.transA ? p.m : p.k;
  const int64_t ldb = p.transB ? p.k : p.n;
  const bool spread = spreadOverBatch(p.batch, p.m, p.n, p.k);
  // The gradient of a batched operand is independent per item; that of a broadcast operand
  // (stride 0) sums over the batch, so its items run in order (each sgemm threaded on its own).
  if (p.dA) {
    forEachItem(p.batch, spread && p.strideA != 0, [&](int64_t i) {
      const float* b = p.b + i * p.strideB;
      const float* dC = p.dC + i * p.strideC;
      const float beta = (p.accumulate || (p.strideA == 0 && i > 0)) ? 1.0f : 0.0f;
      float* dA = p.dA + i * p.strideA;
      if (!p.transA) {
        // d op(A) = dC · op(B)ᵀ : [M, N] x [N, K]; op(B)ᵀ is Bᵀ when B is [K, N], B itself when [N, K].
        sgemm(false, !p.transB, p.m, p.k, p.n, 1.0f, dC, p.n, b, ldb, beta, dA, lda);
      } else {
        // A is stored [K, M]: dA = op(B) · dCᵀ : [K, N] x [N, M].
        sgemm(p.transB, true, p.k, p.m, p.n, 1.0f, b, ldb, dC, p.n, beta, dA, lda);
      }
    });
  }
  if (p.dB) {
    forEachItem(p.batch, spread && p.strideB != 0, [&](int64_t i) {
      const float* a = p.a + i * p.strideA;
      const float* dC = p.dC + i * p.strideC;
      const float beta = (p.accumulate || (p.strideB == 0 && i > 0)) ? 1.0f : 0.0f;
      float* dB = p.dB + i * p.strideB;
      if (!p.transB) {
        // d op(B) = op(A)ᵀ · dC : [K, M] x [M, N].
        sgemm(!p.transA, false, p.k, p.n, p.m, 1.0f, a, lda, dC, p.n, beta, dB, ldb);
      } else {
        // B is stored [N, K]: dB = dCᵀ · op(A) : [N, M] x [M, K].
        sgemm(true, p.transA, p.n, p.k, p.m, 1.0f, dC, p.n, a, lda, beta, dB, ldb);
      }
    });
  }
}

}  // namespace rlhf::cpu
