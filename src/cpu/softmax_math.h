// Row helpers for the kernels that normalise over a vocabulary (cross-entropy, log-prob gather):
// the max of a row and Σ exp(x − shift), with float32 exponentials summed in float64.
#pragma once

#include <cmath>
#include <cstdint>

namespace rlhf::cpu {

// The largest of x[0, n) (n ≥ 1) and, through `index`, the first position holding it
// (torch.argmax's tie rule).
inline float rowMax(const float* x, int64_t n, int64_t* index) {
  float best = x[0];
  int64_t at = 0;
  for (int64_t j = 1; j < n; ++j) {
    if (x[j] > best) {
      best = x[j];
      at = j;
    }
  }
  *index = at;
  return best;
}

// Σ_j exp(x[j] − shift). With shift ≥ max(x) every term is in (0, 1], so float32 partial sums over
// short runs lose nothing that matters; the runs are added in float64 so long rows (V ~ 10⁵) do not
// drift.
inline double sumExpShifted(const float* x, int64_t n, float shift) {
  constexpr int64_t kRun = 1024;
  double total = 0.0;
  for (int64_t j0 = 0; j0 < n; j0 += kRun) {
    const int64_t j1 = j0 + kRun < n ? j0 + kRun : n;
    float run = 0.0f;
    for (int64_t j = j0; j < j1; ++j) run += std::exp(x[j] - shift);
    total += run;
  }
  return total;
}

}  // namespace rlhf::cpu
