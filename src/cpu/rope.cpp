// Rotary position embedding in the Hugging Face `rotate_half` convention, its inverse rotation (the
// backward), and the inverse frequencies as transformers computes them (default and llama3).
#include <algorithm>
#include <cmath>

#include "../kernels.h"
#include "../memory.h"
#include "parallel.h"

namespace rlhf::cpu {

void ropeFrequencies(const RopeFrequencyArgs& p) {
  // _compute_default_rope_parameters: 1.0 / (base ** (arange(0, D, 2).float() / D)), each step a
  // float32 tensor op (the python scalars base and D are cast to float32). pow is evaluated in double
  // and rounded once, i.e. correctly rounded; torch's float32 pow is within an ulp of that.
  const int64_t half = p.headDim / 2;
  const float base = static_cast<float>(p.theta);
  const float dim = static_cast<float>(p.headDim);
  for (int64_t j = 0; j < half; ++j) {
    const float exponent = static_cast<float>(2 * j) / dim;
    const float power = static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(exponent)));
    p.invFreq[j] = 1.0f / power;
  }
  if (!p.llama3) return;

  // _compute_llama3_parameters (Llama 3.1), again in float32 tensor ops. With L = the original
  // context length: wavelengths 2π/f above L/lowFreqFactor are divided by `factor`, those below
  // L/highFreqFactor are kept, and in between f is interpolated with s = (L/λ − low)/(high − low):
  // f' = (1 − s)·f/factor + s·f. torch evaluates `c / tensor` as tensor.reciprocal() * c.
  const float factor = static_cast<float>(p.factor);
  const float lowFactor = static_cast<float>(p.lowFreqFactor);
  const float context = static_cast<float>(p.originalMaxPositions);
  const float lowFreqWavelen = static_cast<float>(p.originalMaxPositions / p.lowFreqFactor);
  const float highFreqWavelen = static_cast<float>(p.originalMaxPositions / p.highFreqFactor);
  const float factorSpan = static_cast<float>(p.highFreqFactor - p.lowFreqFactor);
  const float twoPi = static_cast<float>(6.283185307179586);  // python's 2 * math.pi
  for (int64_t j = 0; j < half; ++j) {
    const float f = p.invFreq[j];
    const float wavelen = (1.0f / f) * twoPi;
    if (wavelen > lowFreqWavelen) {
      p.invFreq[j] = f / factor;
    } else if (!(wavelen < highFreqWavelen)) {
      const float smooth = ((1.0f / wavelen) * context - lowFactor) / factorSpan;
      const float scaledPart = ((1.0f - smooth) * f) / factor;
      const float keptPart = smooth * f;
      p.invFreq[j] = scaledPart + keptPart;
    }
  }
}

namespace {

// Rotates every head of every (b, t) row of x [B·T, H, D] into out (which may be x). The position's
// cos/sin (θ_j = float32(pos) · invFreq[j], as HF's float32 `inv_freq @ position_ids`) are computed
// once per row and shared by its H heads. Per pair (x1, x2) = (x[j], x[j + D/2]):
//   forward  (R):  y1 = c·x1 − s·x2,  y2 = c·x2 + s·x1   (x·cos + rotate_half(x)·sin)
//   backward (Rᵀ): y1 = c·x1 + s·x2,  y2 = c·x2 − s·x1   (dOut·cos − rotate_half(dOut·sin))
template <bool kTranspose>
void rotateRows(const float* x, float* out, const int32_t* positions, const float* invFreq, int64_t rows,
                int64_t heads, int64_t headDim, float scaling) {
  const int64_t half = headDim / 2;
  const int64_t rowSize = heads * headDim;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(1, rowSize));
  parallelFor(rows, grain, [&](int64_t r0, int64_t r1) {
    ScratchBuffer<float> table(static_cast<size_t>(headDim));  // cos [D/2] then sin [D/2]
    float* cosv = table.data();
    float* sinv = table.data() + half;
    for (int64_t r = r0; r < r1; ++r) {
      const float pos = static_cast<float>(positions[r]);
      for (int64_t j = 0; j < half; ++j) {
        const float angle = pos * invFreq[j];
        cosv[j] = std::cos(angle) * scaling;
        sinv[j] = std::sin(angle) * scaling;
      }
      for (int64_t h = 0; h < heads; ++h) {
        const float* xr = x + r * rowSize + h * headDim;
        float* yr = out + r * rowSize + h * headDim;
        for (int64_t j = 0; j < half; ++j) {
          const float x1 = xr[j], x2 = xr[j + half];
          const float c = cosv[j], s = sinv[j];
          if (kTranspose) {
            yr[j] = c * x1 + s * x2;
            yr[j + half] = c * x2 - s * x1;
          } else {
            yr[j] = c * x1 - s * x2;
            yr[j + half] = c * x2 + s * x1;
          }
        }
      }
    }
  });
}

}  // namespace

void rope(const RopeArgs& p) {
  rotateRows<false>(p.x, p.out, p.positions, p.invFreq, p.batch * p.seq, p.heads, p.headDim, p.attentionScaling);
}

void ropeBackward(const RopeBackwardArgs& p) {
  rotateRows<true>(p.dOut, p.dX, p.positions, p.invFreq, p.batch * p.seq, p.heads, p.headDim, p.attentionScaling);
}

}  // namespace rlhf::cpu
