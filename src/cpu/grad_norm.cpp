// Global gradient norm pieces: Σ x² in float64 and in-place scaling (gradient clipping).
#include <algorithm>

#include "../kernels.h"
#include "../memory.h"
#include "parallel.h"
#include "reduce_math.h"

namespace rlhf::cpu {
namespace {
constexpr int64_t kBlock = 1 << 16;  // elements per partial sum

// Σ x² of one tensor.
double tensorSumOfSquares(const float* x, int64_t count) {
  // Fixed-size blocks, each summed on one thread into its own partial, then the partials are
  // added in block order: the result depends only on the data, never on the thread count.
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  if (blocks <= 1) return sumSquaresF64(x, count);
  ScratchBuffer<double> partial(static_cast<size_t>(blocks));
  parallelFor(blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t start = b * kBlock;
      partial[b] = sumSquaresF64(x + start, std::min(kBlock, count - start));
    }
  });
  double total = 0.0;
  for (int64_t b = 0; b < blocks; ++b) total += partial[b];
  return total;
}

}  // namespace

double sumOfSquares(const TensorList& tensors) {
  double sum = 0.0;  // tensor by tensor, in list order: deterministic
  for (int64_t i = 0; i < tensors.size; ++i) sum += tensorSumOfSquares(tensors.data[i], tensors.counts[i]);
  return sum;
}

void scaleInPlace(const TensorList& tensors, float factor) {
  for (int64_t t = 0; t < tensors.size; ++t) {
    float* x = tensors.data[t];
    parallelFor(tensors.counts[t], kBlock / 4, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) x[i] *= factor;
    });
  }
}

}  // namespace rlhf::cpu
