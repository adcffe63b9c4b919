// Plain reference implementations used as benchmark baselines: written for obviousness, single
// threaded, no blocking. (Tests compare against independent float64 references, not these.)
#include "naive.h"

#include <algorithm>
#include <cmath>

#include "../memory.h"

namespace rlhf::cpu {

void naiveMatmul(const MatmulArgs& p) {
  for (int64_t t = 0; t < p.batch; ++t) {
    const float* a = p.a + t * p.strideA;
    const float* b = p.b + t * p.strideB;
    float* c = p.c + t * p.strideC;
    for (int64_t i = 0; i < p.m; ++i) {
      for (int64_t j = 0; j < p.n; ++j) {
        float s = 0.0f;
        for (int64_t k = 0; k < p.k; ++k) {
          const float av = p.transA ? a[k * p.m + i] : a[i * p.k + k];
          const float bv = p.transB ? b[j * p.k + k] : b[k * p.n + j];
          s += av * bv;
        }
        c[i * p.n + j] = p.alpha * s + (p.beta == 0.0f ? 0.0f : p.beta * c[i * p.n + j]);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Embedding and RMSNorm baselines.

void naiveEmbedding(const EmbeddingArgs& p) {
  for (int64_t i = 0; i < p.n; ++i) {
    for (int64_t j = 0; j < p.dim; ++j) p.out[i * p.dim + j] = p.table[p.ids[i] * p.dim + j];
  }
}

void naiveEmbeddingBackward(const EmbeddingBackwardArgs& p) {
  for (int64_t i = 0; i < p.n; ++i) {
    for (int64_t j = 0; j < p.dim; ++j) p.dTable[p.ids[i] * p.dim + j] += p.dOut[i * p.dim + j];
  }
}

void naiveRmsNorm(const RmsNormArgs& p) {
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* x = p.x + r * p.dim;
    float ss = 0.0f;
    for (int64_t j = 0; j < p.dim; ++j) ss += x[j] * x[j];
    const float rstd = 1.0f / std::sqrt(ss / static_cast<float>(p.dim) + p.eps);
    p.rstd[r] = rstd;
    for (int64_t j = 0; j < p.dim; ++j) p.y[r * p.dim + j] = p.weight[j] * (x[j] * rstd);
  }
}

void naiveRmsNormBackward(const RmsNormBackwardArgs& p) {
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* x = p.x + r * p.dim;
    const float* g = p.dY + r * p.dim;
    const float rstd = p.rstd[r];
    float dot = 0.0f;
    for (int64_t j = 0; j < p.dim; ++j) dot += g[j] * p.weight[j] * x[j];
    for (int64_t j = 0; j < p.dim; ++j) {
      const float dx = rstd * p.weight[j] * g[j] - rstd * rstd * rstd * dot / static_cast<float>(p.dim) * x[j];
      p.dX[r * p.dim + j] = p.accumulate ? p.dX[r * p.dim + j] + dx : dx;
      if (p.dWeight) p.dWeight[j] += g[j] * x[j] * rstd;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// RoPE and attention baselines.

void naiveRope(const RopeArgs& p, float theta) {
  const int64_t half = p.headDim / 2;
  for (int64_t r = 0; r < p.batch * p.seq; ++r) {
    for (int64_t h = 0; h < p.heads; ++h) {
      const float* x = p.x + (r * p.heads + h) * p.headDim;
      float* y = p.out + (r * p.heads + h) * p.headDim;
      for (int64_t j = 0; j < half; ++j) {
        const float freq = 1.0f / std::pow(theta, static_cast<float>(2 * j) / static_cast<float>(p.headDim));
        const float angle = static_cast<float>(p.positions[r]) * freq;
        const float c = std::cos(angle) * p.attentionScaling, s = std::sin(angle) * p.attentionScaling;
        const float x1 = x[j], x2 = x[j + half];
        y[j] = x1 * c - x2 * s;
        y[j + half] = x2 * c + x1 * s;
      }
    }
  }
}

namespace {
// Key j is visible to query t of batch row b (see kernels.h §5).
bool naiveVisible(const int32_t* keyMask, bool causal, int64_t b, int64_t t, int64_t j, int64_t seqQ, int64_t seqK) {
  return (!causal || j <= seqK - seqQ + t) && (!keyMask || keyMask[b * seqK + j] != 0);
}
float naiveDot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}
}  // namespace

void naiveAttention(const AttentionArgs& p) {
  const int64_t T = p.seqQ, S = p.seqK, D = p.headDim, group = p.headsQ / p.headsKv;
  ScratchBuffer<float> w(static_cast<size_t>(S));
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t h = 0; h < p.headsQ; ++h) {
      for (int64_t t = 0; t < T; ++t) {
        const float* q = p.q + ((b * T + t) * p.headsQ + h) * D;
        float* out = p.out + ((b * T + t) * p.headsQ + h) * D;
        float max = -INFINITY;
        for (int64_t j = 0; j < S; ++j) {
          const float* k = p.k + ((b * S + j) * p.headsKv + h / group) * D;
          w[j] = naiveVisible(p.keyMask, p.causal, b, t, j, T, S) ? p.scale * naiveDot(q, k, D) : -INFINITY;
          max = std::max(max, w[j]);
        }
        std::fill(out, out + D, 0.0f);
        float& lse = p.lse[(b * p.headsQ + h) * T + t];
        if (max == -INFINITY) {
          lse = -INFINITY;
          continue;
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < S; ++j) {
          w[j] = std::exp(w[j] - max);
          sum += w[j];
        }
        for (int64_t j = 0; j < S; ++j) {
          const float pj = w[j] / sum;
          const float* v = p.v + ((b * S + j) * p.headsKv + h / group) * D;
          for (int64_t d = 0; d < D; ++d) out[d] += pj * v[d];
        }
        lse = max + std::log(sum);
      }
    }
  }
}

void naiveAttentionBackward(const AttentionBackwardArgs& p) {
  const int64_t T = p.seqQ, S = p.seqK, D = p.headDim, group = p.headsQ / p.headsKv;
  std::fill(p.dQ, p.dQ + p.batch * T * p.headsQ * D, 0.0f);
  std::fill(p.dK, p.dK + p.batch * S * p.headsKv * D, 0.0f);
  std::fill(p.dV, p.dV + p.batch * S * p.headsKv * D, 0.0f);
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t h = 0; h < p.headsQ; ++h) {
      for (int64_t t = 0; t < T; ++t) {
        const int64_t row = ((b * T + t) * p.headsQ + h) * D;
        const float lse = p.lse[(b * p.headsQ + h) * T + t];
        if (lse == -INFINITY) continue;
        const float di = naiveDot(p.dOut + row, p.out + row, D);
        for (int64_t j = 0; j < S; ++j) {
          if (!naiveVisible(p.keyMask, p.causal, b, t, j, T, S)) continue;
          const int64_t kv = ((b * S + j) * p.headsKv + h / group) * D;
          const float pj = std::exp(p.scale * naiveDot(p.q + row, p.k + kv, D) - lse);
          const float ds = pj * (naiveDot(p.dOut + row, p.v + kv, D) - di);
          for (int64_t d = 0; d < D; ++d) {
            p.dQ[row + d] += p.scale * ds * p.k[kv + d];
            p.dK[kv + d] += p.scale * ds * p.q[row + d];
            p.dV[kv + d] += pj * p.dOut[row + d];
          }
        }
      }
    }
  }
}

}  // namespace rlhf::cpu
