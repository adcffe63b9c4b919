// Embedding lookup (a row gather) and its backward (a scatter-add into the table).
#include <algorithm>
#include <cstring>

#include "../kernels.h"
#include "parallel.h"

namespace rlhf::cpu {
namespace {
constexpr int64_t kGrainElements = 1 << 14;  // elements per parallel range: amortises the hand-off
constexpr int64_t kColumnBlock = 16;         // one 64-byte cache line of floats
}  // namespace

void embedding(const EmbeddingArgs& p) {
  // out[i, :] = table[ids[i], :]; rows are independent.
  const int64_t grain = std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, p.dim));
  const size_t rowBytes = static_cast<size_t>(p.dim) * sizeof(float);
  parallelFor(p.n, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      std::memcpy(p.out + i * p.dim, p.table + static_cast<int64_t>(p.ids[i]) * p.dim, rowBytes);
    }
  });
}

void embeddingBackward(const EmbeddingBackwardArgs& p) {
  // dTable[ids[i], :] += dOut[i, :]. Repeated ids would race if tokens were split across threads,
  // so the threads split the embedding COLUMNS instead (in whole cache lines): each thread walks
  // every token in order over its own columns. No two threads touch the same element, and every
  // element sums its contributions in token order, whatever the thread count.
  const int64_t blocks = (p.dim + kColumnBlock - 1) / kColumnBlock;
  const int64_t grainBlocks = std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, p.n * kColumnBlock));
  parallelFor(blocks, grainBlocks, [&](int64_t blockBegin, int64_t blockEnd) {
    const int64_t c0 = blockBegin * kColumnBlock;
    const int64_t c1 = std::min(p.dim, blockEnd * kColumnBlock);
    for (int64_t i = 0; i < p.n; ++i) {
      const float* src = p.dOut + i * p.dim;
      float* dst = p.dTable + static_cast<int64_t>(p.ids[i]) * p.dim;
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  });
}

}  // namespace rlhf::cpu
