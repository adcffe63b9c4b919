/**
 * Rotary position embedding (Hugging Face Llama convention, `rotate_half`) and its backward, plus
 * the inverse frequencies exactly as transformers computes them (default and llama3 scaling).
 */
import { nativeFunction } from "../addon";
import { Tensor } from "../tensor";

/** transformers' `rope_scaling` with `rope_type: "llama3"` (Llama 3.1 and later). */
export interface Llama3RopeScaling {
  type: "llama3";
  /** `factor`: low frequencies are divided by it (8 for Llama 3.1); ≥ 1. */
  factor: number;
  /** `low_freq_factor` (1 for Llama 3.1); > 0. */
  lowFreqFactor: number;
  /** `high_freq_factor` (4 for Llama 3.1); > lowFreqFactor. */
  highFreqFactor: number;
  /** `original_max_position_embeddings` (8192 for Llama 3.1). */
  originalMaxPositionEmbeddings: number;
}

export interface RopeFrequencyOptions {
  /** Head dim D (even): the result has D/2 frequencies. */
  headDim: number;
  /** `rope_theta` (10000 for Llama 2, 500000 for Llama 3); > 0. */
  theta: number;
  /** `rope_scaling`; omitted = default RoPE. */
  scaling?: Llama3RopeScaling;
}

type RopeFrequenciesNative = (args: Record<string, unknown>) => Tensor;

/** invFreq [D/2] (float32): 1 / theta^(2j/D), rescaled per llama3 when asked. */
export function ropeFrequencies(options: RopeFrequencyOptions): Tensor {
  const native = nativeFunction<RopeFrequenciesNative>("ropeFrequencies");
  const { scaling, ...rest } = options;
  if (!scaling) return native(rest);
  // The native op takes the scaling keys flat; unknown keys in `scaling` reach it and are rejected.
  const { type, ...params } = scaling;
  return native({ ...rest, scaling: type, ...params });
}

export interface RopeOptions {
  /** float32 [B, T, H, D], D even. */
  x: Tensor;
  /** int32 [B, T], each ≥ 0: the absolute position of every token (left padding, KV-cache offsets). */
  positions: Tensor;
  /** float32 [D/2] from ropeFrequencies(). */
  invFreq: Tensor;
  /** Multiplies cos and sin (transformers' attention_scaling; 1 for default and llama3). */
  attentionScaling?: number;
  /** Rotate x itself and return it. */
  inPlace?: boolean;
}

export interface RopeBackwardOptions {
  /** float32 [B, T, H, D]: the gradient of rope()'s output. */
  dOut: Tensor;
  positions: Tensor;
  invFreq: Tensor;
  attentionScaling?: number;
  /** Write dX into dOut and return it. */
  inPlace?: boolean;
}

/** out = x·cos(θ) + rotate_half(x)·sin(θ), θ[j] = position · invFreq[j mod D/2]. */
export function rope(options: RopeOptions): Tensor {
  return nativeFunction<(args: RopeOptions) => Tensor>("rope")(options);
}

/** dX = dOut·cos(θ) − rotate_half(dOut·sin(θ)): the inverse rotation. */
export function ropeBackward(options: RopeBackwardOptions): Tensor {
  return nativeFunction<(args: RopeBackwardOptions) => Tensor>("ropeBackward")(options);
}

export interface RopeNaiveOptions {
  x: Tensor;
  positions: Tensor;
  theta: number;
  attentionScaling?: number;
}

/** A baseline for benchmarks: single-threaded, recomputes theta^(2j/D) with powf per element. */
export function ropeNaive(options: RopeNaiveOptions): Tensor {
  return nativeFunction<(args: RopeNaiveOptions) => Tensor>("ropeNaive")(options);
}
