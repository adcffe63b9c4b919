// Row helpers for the kernels that normalise over a row (attention, cross-entropy, log-prob gather):
// a float32 exp the compiler can vectorise, and row reductions (max, Σ exp) written as kLanes
// independent partial results so that they vectorise without -ffast-math (which would otherwise
// forbid reassociating a float sum). The partial results are combined in a fixed order, so the
// results do not depend on anything but the inputs.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace rlhf::cpu {

// condition ? a : b on the bit patterns. A float `?:` inside a loop lets GCC move the arithmetic
// that follows into both arms, and with its default -ftrapping-math those float ops then block
// vectorisation; integer masks do not.
inline float selectFloat(bool condition, float a, float b) {
  uint32_t ab, bb;
  std::memcpy(&ab, &a, 4);
  std::memcpy(&bb, &b, 4);
  const uint32_t mask = 0u - static_cast<uint32_t>(condition);
  const uint32_t r = (ab & mask) | (bb & ~mask);
  float out;
  std::memcpy(&out, &r, 4);
  return out;
}

// e^x in float32, branch-free so that loops calling it vectorise. exp(x) = 2^k · e^r with
// k = round(x·log2 e), r = x − k·ln 2 (ln 2 split in two for exactness), e^r by the Cephes expf
// polynomial. Max relative error 8.2e-8 (< 1 ulp) over [−87.3, 88.4]; below that range it returns
// 0 (no subnormals), above it +inf; NaN stays NaN.
inline float fastExp(float x) {
  constexpr float kLo = -87.33654f, kHi = 88.37626f;
  const float xc = selectFloat(x > kHi, kHi, selectFloat(x < kLo, kLo, x));
  // Adding 1.5·2^23 rounds x·log2 e to an integer held in the low mantissa bits of t.
  const float t = xc * 1.44269504088896341f + 12582912.0f;
  const float k = t - 12582912.0f;
  int32_t tBits;
  std::memcpy(&tBits, &t, 4);
  const uint32_t scaleBits = static_cast<uint32_t>(tBits - 0x4B400000 + 127) << 23;  // 2^k
  float scale;
  std::memcpy(&scale, &scaleBits, 4);
  const float r = (xc - k * 0.693359375f) - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float range = x < kLo ? 0.0f : (x > kHi ? std::numeric_limits<float>::infinity() : 1.0f);
  return (p * r * r + r + 1.0f) * scale * range;
}

constexpr int kLanes = 8;

// The largest of x[0, n) (NaNs are skipped; −inf when n == 0 or every value is NaN).
inline float rowMax(const float* x, int64_t n) {
  float lane[kLanes];
  for (float& m : lane) m = -std::numeric_limits<float>::infinity();
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) lane[l] = selectFloat(x[j + l] > lane[l], x[j + l], lane[l]);
  }
  float best = -std::numeric_limits<float>::infinity();
  for (; j < n; ++j) best = x[j] > best ? x[j] : best;
  for (float m : lane) best = m > best ? m : best;
  return best;
}

// Σ x[0, n) in float32 through kLanes partial sums combined in a fixed order.
inline float rowSum(const float* x, int64_t n) {
  float lane[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) lane[l] += x[j + l];
  }
  float total = 0.0f;
  for (; j < n; ++j) total += x[j];
  for (float a : lane) total += a;
  return total;
}

// The first position of `value` in x[0, n), or n when absent (torch.argmax's tie rule).
inline int64_t firstIndexOf(const float* x, int64_t n, float value) {
  for (int64_t j = 0; j < n; ++j) {
    if (x[j] == value) return j;
  }
  return n;
}

// The statistics of an online softmax over one block z[0, n), relative to a shift m ≥ max(z):
// Σ e^(z−m), Σ e^(z−m)·(z−m) and Σ z, in float32 (every e^(z−m) ≤ 1; callers keep blocks short and
// add the blocks' sums in float64).
struct ExpSums {
  float sumExp;
  float sumExpShifted;
  float sum;
};

inline ExpSums expSums(const float* z, int64_t n, float m) {
  float e1[kLanes] = {}, ed[kLanes] = {}, zs[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float d = z[j + l] - m;
      const float e = fastExp(d);
      e1[l] += e;
      ed[l] += e * d;
      zs[l] += z[j + l];
    }
  }
  ExpSums s{0.0f, 0.0f, 0.0f};
  for (; j < n; ++j) {
    const float d = z[j] - m;
    const float e = fastExp(d);
    s.sumExp += e;
    s.sumExpShifted += e * d;
    s.sum += z[j];
  }
  for (int l = 0; l < kLanes; ++l) {
    s.sumExp += e1[l];
    s.sumExpShifted += ed[l];
    s.sum += zs[l];
  }
  return s;
}

// Σ_j e^(x[j] − shift) over a whole row in float64: float32 sums over runs of kRun values (each
// term ≤ 1 when shift ≥ max(x)), added in float64 so that long rows (V ~ 10⁵) do not drift.
inline double sumExpShifted(const float* x, int64_t n, float shift) {
  constexpr int64_t kRun = 2048;
  double total = 0.0;
  for (int64_t j0 = 0; j0 < n; j0 += kRun) total += expSums(x + j0, n - j0 < kRun ? n - j0 : kRun, shift).sumExp;
  return total;
}

}  // namespace rlhf::cpu
