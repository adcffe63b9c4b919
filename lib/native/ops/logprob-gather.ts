/**
 * Log-prob gathering through the lm_head: per token, z = hidden·weightᵀ / T and
 * logp = z[target] − logsumexp(z), computed in token chunks and vocabulary blocks so the
 * [N, V] logits never exist. Tokens whose target is `ignoreIndex` (prompt, padding) are skipped
 * and get logp = lse = entropy = logitMean = 0, argmax = −1.
 */
import { nativeFunction } from "../addon";
import { Tensor } from "../tensor";

export interface LogprobGatherOptions {
  /** Last hidden states, float32 [N, D] (or bfloat16 on the CUDA backend). */
  hidden: Tensor;
  /** lm_head weight [V, D], the dtype of `hidden`. */
  weight: Tensor;
  /** Next-token ids, int32 [N]: each in [0, V) or equal to `ignoreIndex`. */
  targets: Tensor;
  /** Logits are divided by it (GRPO's sampling temperature); finite, > 0. Default 1. */
  temperature?: number;
  /** Target id marking masked tokens. Default −100. */
  ignoreIndex?: number;
  /** Tokens per chunk (≥ 1): scratch memory grows with it, lm_head re-reads shrink. Default 256. */
  chunkSize?: number;
  /** Also return the per-token entropy of softmax(z). */
  entropy?: boolean;
  /** Also return the per-token mean of z over the vocabulary (TRL's logits/* metrics). */
  logitMean?: boolean;
  /** Also return the per-token argmax of z (mean_token_accuracy). */
  argmax?: boolean;
}

export interface LogprobGatherResult {
  /** float32 [N]: log softmax(z)[target]. */
  logp: Tensor;
  /** float32 [N]: logsumexp(z), kept for the backward. */
  lse: Tensor;
  /** float32 [N], when requested: −Σ p log p. */
  entropy?: Tensor;
  /** float32 [N], when requested: mean of z over the vocabulary. */
  logitMean?: Tensor;
  /** int32 [N], when requested: first index of the largest logit (−1 for ignored tokens). */
  argmax?: Tensor;
}

export function logprobGather(options: LogprobGatherOptions): LogprobGatherResult {
  return nativeFunction<(o: LogprobGatherOptions) => LogprobGatherResult>("logprobGather")(options);
}

export interface LogprobGatherBackwardOptions {
  hidden: Tensor;
  weight: Tensor;
  targets: Tensor;
  /** The forward's `lse`. */
  lse: Tensor;
  /** The forward's `entropy`; required with `dEntropy`. */
  entropy?: Tensor;
  /** Gradient of the loss with respect to logp, float32 [N]. */
  dLogp: Tensor;
  /** Gradient of the loss with respect to the entropy, float32 [N] (entropy bonus/regulariser). */
  dEntropy?: Tensor;
  /** Must equal the forward's. */
  temperature?: number;
  ignoreIndex?: number;
  chunkSize?: number;
  /** Compute the lm_head gradient (default: whether `dWeight` is given). */
  wantDWeight?: boolean;
  /** Accumulate the lm_head gradient into this float32 [V, D] tensor. */
  dWeight?: Tensor;
  /** Write the hidden-state gradient into this [N, D] tensor (the dtype of `hidden`). */
  dHidden?: Tensor;
  /** Add into `dHidden` instead of overwriting it. */
  accumulateDHidden?: boolean;
}

export interface LogprobGatherGrads {
  /** [N, D], the dtype of `hidden`; zero rows for ignored tokens (unless accumulating). */
  dHidden: Tensor;
  /** float32 [V, D], when wanted: accumulated into the given tensor, or a new one. */
  dWeight?: Tensor;
}

/**
 * Backward of logprobGather, recomputing the logits chunk by chunk: with p = softmax(z),
 * dz = dLogp·(onehot − p) − dEntropy·p·(log p + entropy), dHidden = dz·W/T, dWeight += dzᵀ·H/T.
 */
export function logprobGatherBackward(options: LogprobGatherBackwardOptions): LogprobGatherGrads {
  return nativeFunction<(o: LogprobGatherBackwardOptions) => LogprobGatherGrads>("logprobGatherBackward")(options);
}
