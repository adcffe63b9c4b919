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
