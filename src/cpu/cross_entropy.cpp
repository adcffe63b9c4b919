// Cross-entropy over materialised logits [N, V] with ignored tokens (kernels.h §10): the NLL/SFT
// terms of ORPO, CPO and DPO's sft loss, and the baseline that log-prob gathering is measured against.
// Rows are independent and threaded; the loss sums the per-row NLLs in row order (float64), so it
// does not depend on the thread count.
#include <algorithm>
#include <cmath>

#include "../kernels.h"
#include "parallel.h"
#include "softmax_math.h"

namespace rlhf::cpu {

void crossEntropy(const CrossEntropyArgs& p) {
  const int64_t grain = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, p.vocab));
  parallelFor(p.n, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int32_t t = p.targets[i];
      if (t == p.ignoreIndex) {
        p.nll[i] = 0.0f;
        p.lse[i] = 0.0f;
        continue;
      }
      const float* z = p.logits + i * p.vocab;
      const float m = rowMax(z, p.vocab);
      const double lse = m + std::log(sumExpShifted(z, p.vocab, m));
      p.lse[i] = static_cast<float>(lse);
      p.nll[i] = static_cast<float>(lse - z[t]);
    }
  });
  double total = 0.0;
  int64_t count = 0;
  for (int64_t i = 0; i < p.n; ++i) {
    if (p.targets[i] == p.ignoreIndex) continue;
    total += p.nll[i];
    ++count;
  }
  *p.count = count;
  *p.loss = p.sum ? total : total / static_cast<double>(std::max<int64_t>(count, 1));
}

void crossEntropyBackward(const CrossEntropyBackwardArgs& p) {
  const float scale = p.sum ? p.gradLoss : static_cast<float>(p.gradLoss / static_cast<double>(std::max<int64_t>(p.count, 1)));
  const int64_t grain = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, p.vocab));
  parallelFor(p.n, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float* d = p.dLogits + i * p.vocab;
      const int32_t t = p.targets[i];
      if (t == p.ignoreIndex) {
        std::fill(d, d + p.vocab, 0.0f);
        continue;
      }
      const float* z = p.logits + i * p.vocab;
      const float lse = p.lse[i];
      for (int64_t j = 0; j < p.vocab; ++j) d[j] = scale * fastExp(z[j] - lse);
      d[t] -= scale;
    }
  });
}

}  // namespace rlhf::cpu
