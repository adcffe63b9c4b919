// The kernel interface: one declaration per op, forward and backward, independent of N-API and of
// the backend. Pointers are to contiguous row-major buffers on the backend's device (host memory for
// rlhf::cpu, device memory for rlhf::cuda, which declares the same functions in cuda/). The binding
// validates every argument before calling a kernel, so kernels trust their inputs.
//
// Conventions
//   - Shapes are written [dim0, dim1, ...] in the comments, innermost last.
//   - Element types: an op templated on T computes on float32 (T = float, every backend) or, on
//     the CUDA backend, bfloat16 storage (T = bf16) with float32 accumulation. Whatever T is,
//     statistics saved for a backward (lse, rstd, LoRA's xa), per-token outputs (log-probs) and the
//     gradients of trained parameters (dWeight, dA, dB, dBias, dTable) are float32, and so are
//     LoRA's adapter matrices and the optimizer's tensors (the float32 master copies). The
//     `XArgs` names are the float32 instantiations, the only ones the CPU backend implements.
//   - Activation gradients (dX) are overwritten unless an `accumulate` flag says otherwise.
//   - Parameter gradients (dW, dA, dB, dBias, dTable, ...) are always accumulated (+=), so
//     gradient accumulation across micro-batches needs no extra pass.
//   - A nullable pointer means "not wanted" (outputs) or "absent" (inputs), as its comment says.
#pragma once

#include <cstdint>

#include "dtype.h"

namespace rlhf {

// ---------------------------------------------------------------------------------------------
// 1. Matmul: C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b], for b in [0, batch).
//    op(A[b]) is [M, K], op(B[b]) is [K, N], C[b] is [M, N]; transA/transB select op(X) = Xᵀ.
//    strideA/strideB/strideC are the element distances between batch items (0 broadcasts).
//    TC is C's type: T, or float32 when bf16 products accumulate into float32 (master gradients).
template <typename T, typename TC = T>
struct MatmulArgsT {
  const T* a;
  const T* b;
  TC* c;
  int64_t batch, m, n, k;
  bool transA, transB;
  int64_t strideA, strideB, strideC;
  float alpha, beta;  // beta = 1 accumulates into C; beta = 0 overwrites it
};
using MatmulArgs = MatmulArgsT<float>;

// Backward of C = op(A)·op(B) (alpha = 1): dA and/or dB (nullable) from dC, accumulated when
// `accumulate` is true, else overwritten. A broadcast operand (stride 0) sums over the batch.
// TG is the gradients' type (T, or float32 for master gradients of bf16 operands).
template <typename T, typename TG = T>
struct MatmulBackwardArgsT {
  const T* a;
  const T* b;
  const T* dC;
  TG* dA;  // same layout as a, or null
  TG* dB;  // same layout as b, or null
  int64_t batch, m, n, k;
  bool transA, transB;
  int64_t strideA, strideB, strideC;
  bool accumulate;
};
using MatmulBackwardArgs = MatmulBackwardArgsT<float>;

// ---------------------------------------------------------------------------------------------
// 2. Embedding lookup. table [V, D], ids [N] (each in [0, V)), out [N, D].
template <typename T>
struct EmbeddingArgsT {
  const T* table;
  const int32_t* ids;
  T* out;
  int64_t n, vocab, dim;
};
using EmbeddingArgs = EmbeddingArgsT<float>;
// dTable[ids[i], :] += dOut[i, :] (scatter-add; repeated ids sum).
template <typename T>
struct EmbeddingBackwardArgsT {
  const T* dOut;
  const int32_t* ids;
  float* dTable;
  int64_t n, vocab, dim;
};
using EmbeddingBackwardArgs = EmbeddingBackwardArgsT<float>;

// ---------------------------------------------------------------------------------------------
// 3. RMSNorm (Llama): y = x · rstd · w, rstd = 1 / sqrt(mean(x²) + eps), over the last dim.
//    x, y [N, D]; w [D]; rstd [N] is saved for the backward.
template <typename T>
struct RmsNormArgsT {
  const T* x;
  const T* weight;
  T* y;
  float* rstd;
  int64_t rows, dim;
  float eps;
};
using RmsNormArgs = RmsNormArgsT<float>;
template <typename T>
struct RmsNormBackwardArgsT {
  const T* dY;
  const T* x;
  const T* weight;
  const float* rstd;
  T* dX;           // [N, D], overwritten (or accumulated if accumulate)
  float* dWeight;  // [D], accumulated; null when the weight is frozen
  int64_t rows, dim;
  bool accumulate;
};
using RmsNormBackwardArgs = RmsNormBackwardArgsT<float>;

// ---------------------------------------------------------------------------------------------
// 4. Rotary position embedding, Hugging Face `rotate_half` convention:
//      out = x · cos(θ) + rotate_half(x) · sin(θ),  rotate_half([x1, x2]) = [-x2, x1],
//    with x1, x2 the two halves of the head dim and θ[j] = position · invFreq[j mod D/2].
//    x, out [B, T, H, D] (out may equal x); positions [B, T] (int32, any offsets); invFreq [D/2].
template <typename T>
struct RopeArgsT {
  const T* x;
  T* out;
  const int32_t* positions;
  const float* invFreq;
  int64_t batch, seq, heads, headDim;
  float attentionScaling;  // multiplies cos and sin (1 for default and llama3 scaling)
};
using RopeArgs = RopeArgsT<float>;
// The backward is the inverse rotation: dX = dOut·cos − rotate_half(dOut·sin) (see rope.cpp).
template <typename T>
struct RopeBackwardArgsT {
  const T* dOut;
  T* dX;  // may equal dOut
  const int32_t* positions;
  const float* invFreq;
  int64_t batch, seq, heads, headDim;
  float attentionScaling;
};
using RopeBackwardArgs = RopeBackwardArgsT<float>;
// Inverse frequencies as transformers computes them, in float32:
//   invFreq[j] = 1 / theta^(2j / D), then the optional llama3 rescaling.
struct RopeFrequencyArgs {
  int64_t headDim;
  double theta;
  bool llama3;  // rope_scaling.rope_type == "llama3"
  double factor, lowFreqFactor, highFreqFactor, originalMaxPositions;
  float* invFreq;  // [D/2]
};

// ---------------------------------------------------------------------------------------------
// 5. Causal self-attention with grouped-query heads and a key padding mask.
//    q [B, T, Hq, D]; k, v [B, S, Hkv, D] with Hq % Hkv == 0 (query head h reads kv head
//    h / (Hq/Hkv)); out [B, T, Hq, D]; lse [B, Hq, T] = logsumexp of the scaled scores, saved for
//    the backward. Query t sits at key position (S − T + t) (T < S when a KV cache holds earlier
//    tokens) and attends keys j ≤ S − T + t whose keyMask[b, j] != 0 (keyMask null = all keys).
//    A query with no visible key outputs zeros and lse = −inf.
template <typename T>
struct AttentionArgsT {
  const T* q;
  const T* k;
  const T* v;
  const int32_t* keyMask;  // [B, S] or null
  T* out;
  float* lse;
  int64_t batch, seqQ, seqK, headsQ, headsKv, headDim;
  float scale;  // usually 1/sqrt(D)
  bool causal;
};
using AttentionArgs = AttentionArgsT<float>;
template <typename T>
struct AttentionBackwardArgsT {
  const T* q;
  const T* k;
  const T* v;
  const int32_t* keyMask;
  const T* out;
  const float* lse;
  const T* dOut;
  T* dQ;  // [B, T, Hq, D], overwritten
  T* dK;  // [B, S, Hkv, D], overwritten
  T* dV;  // [B, S, Hkv, D], overwritten
  int64_t batch, seqQ, seqK, headsQ, headsKv, headDim;
  float scale;
  bool causal;
};
using AttentionBackwardArgs = AttentionBackwardArgsT<float>;

// ---------------------------------------------------------------------------------------------
// 6. SwiGLU pieces: h = silu(gate) · up, silu(x) = x · sigmoid(x). gate, up, h [N, F].
template <typename T>
struct SiluMulArgsT {
  const T* gate;
  const T* up;
  T* out;
  int64_t count;
};
using SiluMulArgs = SiluMulArgsT<float>;
template <typename T>
struct SiluMulBackwardArgsT {
  const T* gate;
  const T* up;
  const T* dOut;
  T* dGate;  // overwritten
  T* dUp;    // overwritten
  int64_t count;
};
using SiluMulBackwardArgs = SiluMulBackwardArgsT<float>;
// The residual stream: dst[i] += src[i] (the decoder adds each block's output to its input in
// place, so the block output's buffer becomes the next residual). dst, src [count], distinct.
template <typename T>
struct AddIntoArgsT {
  T* dst;
  const T* src;
  int64_t count;
};
using AddIntoArgs = AddIntoArgsT<float>;

// ---------------------------------------------------------------------------------------------
// 7. LoRA linear: y = x·Wᵀ (+ bias) + s · (drop(x)·Aᵀ)·Bᵀ, never forming B·A.
//    x [M, K]; W [N, K]; bias [N] or null; A [r, K]; B [N, r]; y [M, N]; xa [M, r] saves
//    drop(x)·Aᵀ for the backward. rank == 0 (A, B, xa null) is a plain linear layer; that is also how
//    adapters are switched off for a reference forward. s = alpha/r (or alpha/√r for rsLoRA) is
//    computed by the caller. drop(x) zeroes each element with probability `dropout` and scales the
//    rest by 1/(1 − dropout); the mask is a pure function of (seed, element index i·K + j of x)
//    (src/cpu/dropout_mask.h), so the backward (and the CUDA backend) regenerate exactly the same
//    mask. xa is required when rank > 0.
template <typename T>
struct LoraArgsT {
  const T* x;
  const T* weight;
  const T* bias;
  const float* a;
  const float* b;
  T* y;
  float* xa;
  int64_t m, k, n, rank;
  float scale;
  float dropout;
  uint64_t seed;
};
using LoraArgs = LoraArgsT<float>;
template <typename T>
struct LoraBackwardArgsT {
  const T* dY;  // [M, N]
  const T* x;
  const T* weight;
  const float* a;
  const float* b;
  const float* xa;
  T* dX;           // [M, K]; overwritten, or accumulated if accumulateDx; null if not wanted
  float* dA;       // [r, K], accumulated; null if rank == 0
  float* dB;       // [N, r], accumulated; null if rank == 0
  float* dWeight;  // [N, K], accumulated; null unless the base weight is trained
  float* dBias;    // [N], accumulated; null unless trained
  int64_t m, k, n, rank;
  float scale;
  float dropout;
  uint64_t seed;
  bool accumulateDx;
};
using LoraBackwardArgs = LoraBackwardArgsT<float>;

// ---------------------------------------------------------------------------------------------
// 8. Log-prob gather: per token i, z = (H[i]·Wᵀ) / T over the vocabulary and
//      logp[i] = z[target[i]] − logsumexp(z),
//    without ever materialising the [N, V] logits: tokens are processed in chunks of `chunkSize`
//    rows with an online logsumexp over vocabulary blocks. Tokens whose target == ignoreIndex get
//    logp = lse = entropy = logitMean = 0 and argmax = −1, and cost nothing.
//    hidden [N, D]; weight (lm_head) [V, D]; targets [N] in [0, V) or ignoreIndex.
template <typename T>
struct LogprobGatherArgsT {
  const T* hidden;
  const T* weight;
  const int32_t* targets;
  int64_t n, dim, vocab;
  float invTemperature;  // 1 / T
  int32_t ignoreIndex;
  int64_t chunkSize;  // tokens per chunk (> 0)
  float* logp;        // [N]
  float* lse;         // [N], logsumexp(z), saved for the backward
  float* entropy;     // [N] or null: −Σ p log p of softmax(z)
  float* logitMean;   // [N] or null: mean over the vocabulary of z (TRL's logits/* metrics)
  int32_t* argmax;    // [N] or null: argmax of z (mean_token_accuracy)
};
using LogprobGatherArgs = LogprobGatherArgsT<float>;
// Backward by recomputing each chunk's logits: with p = softmax(z),
//   dz = dLogp · (onehot(target) − p) + dEntropy · (−p · (log p + entropy)),
//   dH = (dz · W) / T,  dW += (dzᵀ · H) / T.
template <typename T>
struct LogprobGatherBackwardArgsT {
  const T* hidden;
  const T* weight;
  const int32_t* targets;
  const float* lse;
  const float* entropy;   // [N]; required when dEntropy is given
  const float* dLogp;     // [N]
  const float* dEntropy;  // [N] or null
  T* dHidden;             // [N, D]; overwritten, or accumulated if accumulateDHidden
  float* dWeight;         // [V, D] accumulated, or null when the lm_head is frozen
  int64_t n, dim, vocab;
  float invTemperature;
  int32_t ignoreIndex;
  int64_t chunkSize;
  bool accumulateDHidden;
};
using LogprobGatherBackwardArgs = LogprobGatherBackwardArgsT<float>;

// ---------------------------------------------------------------------------------------------
// 9. Preference and RL losses (formulas: shared/reference/trl-losses.md). Inputs are per-sequence
//    sums S of completion-token log-probs and completion lengths n; the kernels compute in float64
//    and return the loss, d loss / d S for every policy sequence, and TRL's metrics. The tensors are
//    on the backend's device; `loss`, the metrics structs and DPO's lossTypes/lossWeights lists are
//    host memory on every backend (the CUDA kernels copy the few scalars back themselves).

enum class DpoLossType : int32_t {
  Sigmoid, Hinge, Ipo, Robust, ExoPair, NcaPair, BcoPair, SppoHard, ApoZero, ApoDown, Discopop,
  SigmoidNorm, Sft
};
enum class FDivergence : int32_t { ReverseKl, ForwardKl, JsDivergence, AlphaDivergence };

// What every pairwise method logs, as means over the pairs: rewards/chosen, rewards/rejected,
// rewards/accuracies (chosen reward > rejected reward), rewards/margins, logps/chosen, logps/rejected.
// Each method says what its rewards and logps are.
struct PairMetrics {
  double rewardsChosen, rewardsRejected, rewardsAccuracies, rewardsMargins;
  double logpsChosen, logpsRejected;
};
// Batch of P pairs; loss = Σ_k weights[k] · mean_pairs(L_k) (each pair's losses times pairWeights[i]
// when given — WPO). `sft` is the token-mean NLL of the chosen completions: −Σ S_c / max(Σ n_c, 1),
// broadcast to every pair (so scaled by the mean pair weight). ipo and sigmoid_norm divide each
// score by max(n, 1). Metrics: rewards β·(S − S_ref) (reverse KL, whatever the loss types), logps S.
struct DpoLossArgs {
  int64_t pairs;
  const float* policyChosen;    // [P]
  const float* policyRejected;  // [P]
  const float* refChosen;       // [P]
  const float* refRejected;     // [P]
  const float* chosenLengths;   // [P] completion token counts; null unless ipo, sigmoid_norm or sft
  const float* rejectedLengths; // [P]; null unless ipo or sigmoid_norm
  const float* pairWeights;     // [P] or null
  const DpoLossType* lossTypes;
  const float* lossWeights;
  int32_t numLossTypes;
  float beta, labelSmoothing, fAlphaCoef, discopopTau;
  FDivergence fDivergence;
  double* loss;
  float* dPolicyChosen;    // [P], overwritten
  float* dPolicyRejected;  // [P], overwritten
  PairMetrics* metrics;    // or null
};

enum class KtoLossType : int32_t { Kto, ApoZeroUnpaired };
struct KtoMetrics {
  // Sums and counts, so the trainer can average over micro-batches and processes as TRL does.
  double rewardsChosenSum, rewardsRejectedSum, logpsChosenSum, logpsRejectedSum;
  int64_t chosenCount, rejectedCount;
};
// Unpaired batch of B rows: r = S − S_ref; desirable rows: λ_D(1 − σ(β(r − z0))), undesirable rows:
// λ_U(1 − σ(β(z0 − r))); loss = mean over rows. z0 is the (already clamped) KL anchor.
struct KtoLossArgs {
  int64_t rows;
  const float* policyLogps;  // [B]
  const float* refLogps;     // [B]
  const int32_t* desirable;  // [B] 1 = desirable (chosen), 0 = undesirable
  float klAnchor;            // z0 (ignored for apo_zero_unpaired)
  float beta, desirableWeight, undesirableWeight;
  KtoLossType lossType;
  double* loss;
  float* dPolicy;  // [B], overwritten
  KtoMetrics* metrics;  // or null
};

struct OddsRatioMetrics {
  PairMetrics pair;  // logps: the average log-probs S/n
  double logOddsRatio, logOddsChosen, nllLoss;
};
// ORPO: a = S_c/max(n_c, 1), b = S_r/max(n_r, 1), both < 0; log_odds = (a − b) − (log1mexp(a) −
// log1mexp(b)); loss = nll − mean_pairs(β · logσ(log_odds)). `nll` is the chosen NLL computed by the
// caller (its gradient is the caller's too). Rewards are β·a, β·b.
struct OrpoLossArgs {
  int64_t pairs;
  const float* policyChosen;
  const float* policyRejected;
  const float* chosenLengths;
  const float* rejectedLengths;
  float beta;
  double nll;
  double* loss;
  float* dPolicyChosen;       // [P], overwritten
  float* dPolicyRejected;     // [P], overwritten
  OddsRatioMetrics* metrics;  // or null
};

enum class CpoLossType : int32_t { Sigmoid, Hinge, Ipo, Simpo };
struct CpoMetrics {
  PairMetrics pair;
  double nllLoss;
};
// CPO / SimPO / AlphaPO: scores are S (sigmoid, hinge) or S/max(n, 1) (ipo, simpo; lengths may be
// null otherwise), optionally reshaped by alpha; loss = mean_pairs(L_pref) + cpoAlpha · nll. Rewards
// are β times the (reshaped) scores; logps* are the means of the scores.
struct CpoLossArgs {
  int64_t pairs;
  const float* policyChosen;
  const float* policyRejected;
  const float* chosenLengths;
  const float* rejectedLengths;
  CpoLossType lossType;
  float beta, labelSmoothing, simpoGamma, alpha, cpoAlpha;
  double nll;
  double* loss;
  float* dPolicyChosen;    // [P], overwritten
  float* dPolicyRejected;  // [P], overwritten
  CpoMetrics* metrics;     // or null
};

enum class GrpoLossType : int32_t { Grpo, Bnpo, DrGrpo, Dapo };
enum class ImportanceLevel : int32_t { Token, Sequence };
// TRL's definitions, local to the micro-batch. Clipped means: token-level, the masked mean of
// [ρ' < 1 − ε_low ∧ A < 0] (low), [ρ' > 1 + ε_high ∧ A > 0] (high) and their union (region), with ρ'
// the δ-capped ratio; sequence-level, the mean of the per-row flags over all B rows. Min/max: over
// rows of each row's clipped fraction (rows without mask tokens skipped at token level; NaN if none).
struct GrpoMetrics {
  double kl;  // masked mean of the k3 KL (0 when beta == 0)
  double clipRatioLowMean, clipRatioHighMean, clipRatioRegionMean;
  double clipRatioLowMin, clipRatioHighMax;
  double maskedTokens;  // Σ mask
};
// Per-token clipped surrogate + β·k3 KL, aggregated per loss type (trl-losses.md §6.7–6.9).
// logp, oldLogp, refLogp, mask [B, T] (mask values 0 or 1; masked-out tokens are skipped and get
// dLogp = 0); advantages [B].
struct GrpoLossArgs {
  int64_t rows, seq;
  const float* logp;
  const float* oldLogp;  // null: on-policy, old = logp (detached)
  const float* refLogp;  // null unless beta != 0
  const float* advantages;
  const float* mask;
  float epsilonLow, epsilonHigh, beta;
  float delta;  // > 0: cap of the unclipped ratio (INTELLECT-2); 0 = off
  GrpoLossType lossType;
  ImportanceLevel importanceLevel;
  int64_t maxCompletionLength;  // dr_grpo normaliser
  double tokenNormalizer;       // dapo: max(global loss-mask tokens, 1) / world size
  int32_t gradAccumSteps;       // grpo, bnpo, dr_grpo divide by it
  double* loss;
  float* dLogp;  // [B, T], overwritten
  GrpoMetrics* metrics;  // or null
};

// ---------------------------------------------------------------------------------------------
// 10. Cross-entropy over masked tokens, AdamW, global gradient norm and clipping.
// logits [N, V], targets [N] (ignoreIndex skipped). nll [N] per token (0 when ignored), lse [N].
// Returns through `loss` the mean (or sum) over non-ignored tokens and through `count` their number
// (`loss` and `count` are host memory on every backend).
template <typename T>
struct CrossEntropyArgsT {
  const T* logits;
  const int32_t* targets;
  int64_t n, vocab;
  int32_t ignoreIndex;
  bool sum;  // false: mean over counted tokens (count clamped to ≥ 1)
  float* nll;
  float* lse;
  double* loss;
  int64_t* count;
};
using CrossEntropyArgs = CrossEntropyArgsT<float>;
// dLogits = gradLoss · (softmax(logits) − onehot(target)) / (sum ? 1 : count); 0 on ignored rows.
template <typename T>
struct CrossEntropyBackwardArgsT {
  const T* logits;
  const int32_t* targets;
  const float* lse;
  int64_t n, vocab;
  int32_t ignoreIndex;
  bool sum;
  int64_t count;
  float gradLoss;
  T* dLogits;  // [N, V], overwritten
};
using CrossEntropyBackwardArgs = CrossEntropyBackwardArgsT<float>;

// Decoupled weight decay AdamW (PyTorch semantics), one tensor:
//   p ← p − lr·wd·p;  m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;
//   p ← p − (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps).
// The hyperparameters are float64, as PyTorch's Python floats: 1 − β2 from a float32 β2 = 0.999
// would be off by 1.3e-5 relative.
// One step updates every trained tensor of the list (one fused launch on the CUDA backend).
struct AdamWTensor {
  float* param;
  const float* grad;
  float* m;
  float* v;
  int64_t count;
};
struct AdamWArgs {
  const AdamWTensor* tensors;  // host array of `numTensors` entries (pointers on the device)
  int64_t numTensors;
  double lr, beta1, beta2, eps, weightDecay;
  int64_t step;  // t ≥ 1, after incrementing
};

// A list of float32 tensors: host arrays of device pointers and element counts.
struct TensorList {
  float* const* data;
  const int64_t* counts;
  int64_t size;
};

namespace cpu {

void matmul(const MatmulArgs& args);
void matmulBackward(const MatmulBackwardArgs& args);

void embedding(const EmbeddingArgs& args);
void embeddingBackward(const EmbeddingBackwardArgs& args);

void rmsNorm(const RmsNormArgs& args);
void rmsNormBackward(const RmsNormBackwardArgs& args);

void ropeFrequencies(const RopeFrequencyArgs& args);
void rope(const RopeArgs& args);
void ropeBackward(const RopeBackwardArgs& args);

void attention(const AttentionArgs& args);
void attentionBackward(const AttentionBackwardArgs& args);

void siluMul(const SiluMulArgs& args);
void siluMulBackward(const SiluMulBackwardArgs& args);
void addInto(const AddIntoArgs& args);

void lora(const LoraArgs& args);
void loraBackward(const LoraBackwardArgs& args);

void logprobGather(const LogprobGatherArgs& args);
void logprobGatherBackward(const LogprobGatherBackwardArgs& args);

void dpoLoss(const DpoLossArgs& args);
void ktoLoss(const KtoLossArgs& args);
void orpoLoss(const OrpoLossArgs& args);
void cpoLoss(const CpoLossArgs& args);
void grpoLoss(const GrpoLossArgs& args);

void crossEntropy(const CrossEntropyArgs& args);
void crossEntropyBackward(const CrossEntropyBackwardArgs& args);

void adamw(const AdamWArgs& args);
// Σ x² over every element of every tensor, accumulated in float64 and returned to the host (the
// global gradient norm is its square root).
double sumOfSquares(const TensorList& tensors);
// x ← x · factor for every tensor (gradient clipping).
void scaleInPlace(const TensorList& tensors, float factor);

}  // namespace cpu
}  // namespace rlhf
