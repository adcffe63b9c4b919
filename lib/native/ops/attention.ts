/**
 * Causal grouped-query attention with a key padding mask, and its backward. The forward saves the
 * logsumexp of each query row so that the backward recomputes the probabilities.
 *
 * q, k, v, out and dOut are float32, or all bfloat16 on the CUDA backend (then out, dQ, dK and dV
 * are bfloat16 too); lse is float32 either way.
 */
import { nativeFunction } from "../addon";
import { Tensor } from "../tensor";

export interface AttentionOptions {
  /** [B, T, Hq, D]. */
  q: Tensor;
  /** [B, S, Hkv, D], Hq a multiple of Hkv (query head h reads kv head h / (Hq/Hkv)). */
  k: Tensor;
  /** [B, S, Hkv, D]. */
  v: Tensor;
  /** int32 [B, S]: 1 = attend to the key, 0 = padding. Omitted: every key. */
  keyMask?: Tensor;
  /** Multiplies q·k (default 1/sqrt(D)); finite and > 0. */
  scale?: number;
  /**
   * Query t sits at key position S − T + t and sees keys up to it (default true; needs T ≤ S, so
   * T < S decodes against a KV cache). A query that sees no key outputs zeros and lse = −inf.
   */
  causal?: boolean;
}

export interface AttentionResult {
  /** [B, T, Hq, D], q's dtype. */
  out: Tensor;
  /** float32 [B, Hq, T]: logsumexp of each row's scaled scores, for the backward. */
  lse: Tensor;
}

export interface AttentionBackwardOptions extends AttentionOptions {
  /** The forward's `out` and `lse`. */
  out: Tensor;
  lse: Tensor;
  /** [B, T, Hq, D]: the gradient of `out`. */
  dOut: Tensor;
}

export interface AttentionGrads {
  /** [B, T, Hq, D] */
  dQ: Tensor;
  /** [B, S, Hkv, D] */
  dK: Tensor;
  /** [B, S, Hkv, D] */
  dV: Tensor;
}

type AttentionNative = (args: AttentionOptions) => AttentionResult;
type AttentionBackwardNative = (args: AttentionBackwardOptions) => AttentionGrads;

export function attention(options: AttentionOptions): AttentionResult {
  return nativeFunction<AttentionNative>("attention")(options);
}

export function attentionBackward(options: AttentionBackwardOptions): AttentionGrads {
  return nativeFunction<AttentionBackwardNative>("attentionBackward")(options);
}

/** A baseline for benchmarks: row by row, single-threaded (as attention(), float32 only, CPU backend). */
export function attentionNaive(options: AttentionOptions): AttentionResult {
  return nativeFunction<AttentionNative>("attentionNaive")(options);
}

/** A baseline for benchmarks (as attentionBackward(), float32 only, CPU backend). */
export function attentionBackwardNaive(options: AttentionBackwardOptions): AttentionGrads {
  return nativeFunction<AttentionBackwardNative>("attentionBackwardNaive")(options);
}
