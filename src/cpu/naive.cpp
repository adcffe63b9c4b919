// Plain reference implementations used as benchmark baselines: written for obviousness, single
// threaded, no blocking. (Tests compare against independent float64 references, not these.)
#include "naive.h"

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

}  // namespace rlhf::cpu

#include <cmath>

namespace rlhf::cpu {

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

}  // namespace rlhf::cpu
