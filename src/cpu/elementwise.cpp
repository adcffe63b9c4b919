// Elementwise tensor arithmetic for the decoder's residual stream. Memory-bound, threaded in large
// ranges.
#include "../kernels.h"
#include "parallel.h"

namespace rlhf::cpu {
namespace {
constexpr int64_t kGrain = 1 << 15;
}

void addInto(const AddIntoArgs& p) {
  parallelFor(p.count, kGrain, [&](int64_t begin, int64_t end) {
    float* dst = p.dst;
    const float* src = p.src;
    for (int64_t i = begin; i < end; ++i) dst[i] += src[i];
  });
}

}  // namespace rlhf::cpu
