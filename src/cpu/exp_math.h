// A branch-free float exp for softmax-style loops (attention, log-softmax): plain arithmetic and
// bit operations only, so a loop over it vectorizes, unlike a call to std::exp.
#pragma once

#include <cstdint>
#include <cstring>

namespace rlhf::cpu {

// exp(x) within ~2 ulp of expf for x in [−87, 88]; 0 below −87 (where expf is denormal or 0, and
// for x = −inf) and +inf above 88 (softmax exponents are ≤ 0, so that range is never used). x = n·ln2 + r with |r| ≤ ln2/2, exp(x) = 2ⁿ · exp(r), exp(r) by the
// Cephes minimax polynomial. n is rounded with the 1.5·2²³ trick (exact for |x·log2 e| < 2²²).
inline float expFast(float x) {
  const float xc = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  constexpr float kRound = 12582912.0f;  // 1.5 · 2²³
  const float n = (xc * 1.44269504088896341f + kRound) - kRound;
  // r = x − n·ln2 in two steps (ln2 = 0.693359375 − 2.12194440e-4, the first part exact in float).
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2ⁿ, n in [−126, 127]
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const float y = x > 88.0f ? __builtin_inff() : p * scale;
  return x < -87.0f ? 0.0f : y;
}

}  // namespace rlhf::cpu
