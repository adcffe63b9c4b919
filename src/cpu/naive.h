// Naive baselines for `rlhf-native bench` (see naive.cpp).
#pragma once

#include "../kernels.h"

namespace rlhf::cpu {

// The textbook triple loop: C[i, j] = alpha · Σ_k op(A)[i, k] · op(B)[k, j] (+ beta · C).
void naiveMatmul(const MatmulArgs& args);

// RoPE with the frequencies recomputed per element as 1 / powf(theta, 2j/D) (args.invFreq unused).
void naiveRope(const RopeArgs& args, float theta);

// Attention row by row: for each (b, h, t), a loop over keys for the scores, a softmax, a weighted
// sum of the values; the backward recomputes each row the same way and scatters into dK/dV.
void naiveAttention(const AttentionArgs& args);
void naiveAttentionBackward(const AttentionBackwardArgs& args);

// out[i, :] = table[ids[i], :], one float at a time, single-threaded.
void naiveEmbedding(const EmbeddingArgs& args);
// dTable[ids[i], :] += dOut[i, :], one float at a time, single-threaded.
void naiveEmbeddingBackward(const EmbeddingBackwardArgs& args);

// RMSNorm row by row in float32 (the mean of squares in a float accumulator), single-threaded.
void naiveRmsNorm(const RmsNormArgs& args);
// The RMSNorm backward straight from its formula, row by row, dWeight accumulated directly.
void naiveRmsNormBackward(const RmsNormBackwardArgs& args);

}  // namespace rlhf::cpu
