// Branch-free float helpers for softmax-style loops (attention, log-softmax): a loop over expFast
// or selectFloat vectorizes, unlike a loop calling std::exp or using a float ?:.
#pragma once

#include <cstdint>
#include <cstring>

namespace rlhf::cpu {
namespace detail {
inline uint32_t floatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float bitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
// All ones where `condition`, else 0: a select mask. Selects are written as bit operations because
// with GCC's default -ftrapping-math a float ?: inside the loop body blocks vectorization.
inline uint32_t selectMask(bool condition) { return 0u - static_cast<uint32_t>(condition); }
}  // namespace detail

// condition ? a : b, in the bit-operation form that keeps loops vectorizable (see selectMask).
inline float selectFloat(bool condition, float a, float b) {
  const uint32_t m = detail::selectMask(condition);
  return detail::bitsFloat((detail::floatBits(a) & m) | (detail::floatBits(b) & ~m));
}

// exp(x) within 1 ulp of the exact value for x in [−87, 88]; 0 below −87 (where expf is denormal or
// 0; also for x = −inf) and +inf above 88 (softmax exponents are ≤ 0, so that range is never used).
// x = n·ln2 + r with |r| ≤ ln2/2, exp(x) = 2ⁿ · exp(r), exp(r) by the Cephes minimax polynomial;
// n is rounded with the 1.5·2²³ trick (exact for |x·log2 e| < 2²²).
inline float expFast(float x) {
  using detail::bitsFloat;
  using detail::floatBits;
  using detail::selectMask;
  const uint32_t below = selectMask(x < -87.0f);
  const uint32_t above = selectMask(x > 88.0f);
  const float xc = bitsFloat((floatBits(x) & ~(below | above)) | (below & floatBits(-87.0f)) | (above & floatBits(88.0f)));
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
  const float scale = bitsFloat(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);  // 2ⁿ, n in [−126, 127]
  return bitsFloat((floatBits(p * scale) & ~(below | above)) | (above & 0x7f800000u));
}

}  // namespace rlhf::cpu
