// RMSNorm as Hugging Face's LlamaRMSNorm (also Qwen3's per-head q/k norm, with rows = tokens·heads
// and dim = head_dim): y = w · (x · rstd), rstd = 1 / sqrt(mean(x²) + eps), the mean in float64.
#include <algorithm>
#include <cmath>

#include "../kernels.h"
#include "../memory.h"
#include "parallel.h"
#include "reduce_math.h"

namespace rlhf::cpu {
namespace {

constexpr int64_t kGrainElements = 1 << 14;  // elements per parallel task
constexpr int64_t kMaxChunks = 64;           // bounds the dWeight partials to 64 · D doubles

// Rows per task so that a task holds about kGrainElements elements.
int64_t grainRows(int64_t dim) { return std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, dim)); }

}  // namespace

void rmsNorm(const RmsNormArgs& p) {
  const int64_t d = p.dim;
  parallelFor(p.rows, grainRows(d), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* x = p.x + r * d;
      float* y = p.y + r * d;
      const double meanSquare = sumSquaresF64(x, d) / static_cast<double>(d);
      const float rstd = static_cast<float>(1.0 / std::sqrt(meanSquare + static_cast<double>(p.eps)));
      p.rstd[r] = rstd;
      for (int64_t j = 0; j < d; ++j) y[j] = p.weight[j] * (x[j] * rstd);
    }
  });
}

void rmsNormBackward(const RmsNormBackwardArgs& p) {
  // With r = rstd and g = dY of one row:
  //   dX_k = r · w_k · g_k − (r³ / D) · x_k · Σ_j g_j · w_j · x_j
  //   dW_j += Σ_rows g_j · x_j · r
  // The rows are cut into chunks whose number depends only on the shape (never on the thread
  // count); each chunk sums its dW contributions into its own float64 partial row, and the
  // partials are added in chunk order, so dW is deterministic and race-free.
  const int64_t d = p.dim;
  if (p.rows == 0) return;
  const int64_t chunks =
      std::clamp<int64_t>((p.rows * d + kGrainElements - 1) / kGrainElements, 1, std::min(kMaxChunks, p.rows));
  const int64_t chunkRows = (p.rows + chunks - 1) / chunks;
  ScratchBuffer<double> partials(p.dWeight ? static_cast<size_t>(chunks * d) : 0);

  parallelTasks(chunks, [&](int64_t c, int) {
    double* partial = p.dWeight ? partials.data() + c * d : nullptr;
    if (partial) std::fill(partial, partial + d, 0.0);
    const int64_t end = std::min(p.rows, (c + 1) * chunkRows);
    for (int64_t r = c * chunkRows; r < end; ++r) {
      const float* x = p.x + r * d;
      const float* g = p.dY + r * d;
      float* dx = p.dX + r * d;
      const float rstd = p.rstd[r];
      const double dot = sumF64(d, [&](int64_t j) { return static_cast<double>(g[j]) * p.weight[j] * x[j]; });
      const double rstdD = rstd;
      const float c3 = static_cast<float>(rstdD * rstdD * rstdD * dot / static_cast<double>(d));
      if (p.accumulate) {
        for (int64_t j = 0; j < d; ++j) dx[j] += rstd * p.weight[j] * g[j] - c3 * x[j];
      } else {
        for (int64_t j = 0; j < d; ++j) dx[j] = rstd * p.weight[j] * g[j] - c3 * x[j];
      }
      if (partial) {
        for (int64_t j = 0; j < d; ++j) partial[j] += static_cast<double>(g[j] * x[j]) * rstdD;
      }
    }
  });

  if (!p.dWeight) return;
  parallelFor(d, kGrainElements / chunks + 1, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      double s = 0.0;
      for (int64_t c = 0; c < chunks; ++c) s += partials[c * d + j];
      p.dWeight[j] += static_cast<float>(s);
    }
  });
}

}  // namespace rlhf::cpu
