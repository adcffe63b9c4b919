// Naive baselines for `rlhf-native bench` (see naive.cpp).
#pragma once

#include "../kernels.h"

namespace rlhf::cpu {

// The textbook triple loop: C[i, j] = alpha · Σ_k op(A)[i, k] · op(B)[k, j] (+ beta · C).
void naiveMatmul(const MatmulArgs& args);

}  // namespace rlhf::cpu
