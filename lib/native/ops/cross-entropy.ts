/**
 * Cross-entropy over materialised logits with masked tokens: the NLL terms of ORPO/CPO/SFT, and
 * the "materialise the logits" baseline of log-prob gathering.
 */
import { nativeFunction } from "../addon";
import { Tensor } from "../tensor";

export type CrossEntropyReduction = "mean" | "sum";

export interface CrossEntropyOptions {
  /** float32 [N, V]. */
  logits: Tensor;
  /** int32 [N]: each in [0, V) or equal to `ignoreIndex`. */
  targets: Tensor;
  /** Target id of tokens that do not count. Default −100. */
  ignoreIndex?: number;
  /** "mean" over counted tokens (count clamped to ≥ 1, default) or "sum". */
  reduction?: CrossEntropyReduction;
}

export interface CrossEntropyResult {
  /** Mean or sum of the NLL over counted tokens (computed in float64). */
  loss: number;
  /** Number of counted (non-ignored) tokens. */
  count: number;
  /** float32 [N]: lse − logits[target], 0 for ignored tokens. */
  nll: Tensor;
  /** float32 [N]: logsumexp of each row, 0 for ignored tokens. */
  lse: Tensor;
}

export function crossEntropy(options: CrossEntropyOptions): CrossEntropyResult {
  return nativeFunction<(o: CrossEntropyOptions) => CrossEntropyResult>("crossEntropy")(options);
}

export interface CrossEntropyBackwardOptions {
  logits: Tensor;
  targets: Tensor;
  /** The forward's `lse`. */
  lse: Tensor;
  /** The forward's `count` (or any token count to normalise by, e.g. over several micro-batches). */
  count: number;
  /** d loss_total / d loss. Default 1. */
  gradLoss?: number;
  ignoreIndex?: number;
  reduction?: CrossEntropyReduction;
}

/** dLogits [N, V] = gradLoss · (softmax(logits) − onehot(target)) / (mean ? max(count, 1) : 1); 0 on ignored rows. */
export function crossEntropyBackward(options: CrossEntropyBackwardOptions): Tensor {
  return nativeFunction<(o: CrossEntropyBackwardOptions) => Tensor>("crossEntropyBackward")(options);
}
