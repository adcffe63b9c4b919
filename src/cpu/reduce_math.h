// Float64 sums over float32 data, shared by the reductions (RMSNorm, gradient norms). Eight
// independent partial sums break the single dependency chain of a naive loop, so the additions
// pipeline and vectorise; they are combined in a fixed order, so the result depends only on the
// input (never on the thread count).
#pragma once

#include <cstdint>

namespace rlhf::cpu {

// Σ term(i) for i in [0, n), accumulated in float64.
template <typename Term>
inline double sumF64(int64_t n, Term term) {
  constexpr int kLanes = 8;
  double lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) lane[l] += term(i + l);
  }
  for (int l = 0; i < n; ++i, ++l) lane[l] += term(i);
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

// Σ x² in float64.
inline double sumSquaresF64(const float* x, int64_t n) {
  return sumF64(n, [x](int64_t i) {
    const double v = x[i];
    return v * v;
  });
}

}  // namespace rlhf::cpu
