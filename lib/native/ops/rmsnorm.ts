/**
 * RMSNorm as Hugging Face's LlamaRMSNorm: y = w · x / sqrt(mean(x²) + eps) over the last dim, the
 * mean in float64. Also Qwen3's per-head q/k norm: x [B, T, H, head_dim] with weight [head_dim].
 */
import { nativeFunction } from "../addon";
import { Tensor } from "../tensor";

export interface RmsNormOptions {
  /** config.rms_norm_eps; > 0 (default 1e-6, LlamaRMSNorm's default). */
  eps?: number;
}

export interface RmsNormResult {
  /** Like x. */
  y: Tensor;
  /** x's leading dims: 1 / sqrt(mean(x²) + eps) per row, saved for the backward. */
  rstd: Tensor;
}

export interface RmsNormBackwardOptions {
  /** Write dX here (like x) instead of allocating it. */
  dX?: Tensor;
  /** Add to `dX` instead of overwriting it (e.g. a residual branch). */
  accumulate?: boolean;
  /** Compute dWeight (default true; false when the weight is frozen, e.g. under LoRA). */
  wantWeight?: boolean;
  /** Accumulate dWeight into this tensor [D]. */
  dWeight?: Tensor;
}

export interface RmsNormGrads {
  dX: Tensor;
  dWeight?: Tensor;
}

type RmsNormNative = (args: { x: Tensor; weight: Tensor } & RmsNormOptions) => RmsNormResult;
type RmsNormBackwardNative = (
  args: { dY: Tensor; x: Tensor; weight: Tensor; rstd: Tensor } & RmsNormBackwardOptions,
) => RmsNormGrads;

/** x: float32 [..., D] (rank ≥ 2); weight: float32 [D]. */
export function rmsNorm(x: Tensor, weight: Tensor, options: RmsNormOptions = {}): RmsNormResult {
  return nativeFunction<RmsNormNative>("rmsNorm")({ x, weight, ...options });
}

/** Gradients of y = rmsNorm(x, weight) given dY (like x) and the forward's rstd. */
export function rmsNormBackward(
  dY: Tensor, x: Tensor, weight: Tensor, rstd: Tensor, options: RmsNormBackwardOptions = {},
): RmsNormGrads {
  return nativeFunction<RmsNormBackwardNative>("rmsNormBackward")({ dY, x, weight, rstd, ...options });
}

/** Single-threaded float32 loops with the same contracts: benchmark baselines. */
export function rmsNormNaive(x: Tensor, weight: Tensor, options: RmsNormOptions = {}): RmsNormResult {
  return nativeFunction<RmsNormNative>("rmsNormNaive")({ x, weight, ...options });
}

export function rmsNormBackwardNaive(
  dY: Tensor, x: Tensor, weight: Tensor, rstd: Tensor, options: RmsNormBackwardOptions = {},
): RmsNormGrads {
  return nativeFunction<RmsNormBackwardNative>("rmsNormBackwardNaive")({ dY, x, weight, rstd, ...options });
}
