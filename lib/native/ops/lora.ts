/**
 * LoRA linear layer: y = x·Wᵀ (+ bias) + scale · (drop(x)·Aᵀ)·Bᵀ, computed without ever forming
 * B·A. Without adapters (or with rank 0) it is the plain linear layer, which is also how adapters
 * are switched off for a reference-model forward. x, weight, bias (and y, dY, dX) are float32, or
 * bfloat16 on the CUDA backend; the adapters, xa and the parameter gradients are always float32.
 */
import { nativeFunction } from "../addon";
import { Tensor } from "../tensor";

export interface LoraOptions {
  /** Input, float32 [..., K] (rank ≥ 2, e.g. [B, T, K]). */
  x: Tensor;
  /** Base weight, float32 [N, K] (PyTorch's nn.Linear layout). */
  weight: Tensor;
  /** Base bias, float32 [N]. */
  bias?: Tensor;
  /** lora_A, float32 [r, K]; give it with `b` or not at all. */
  a?: Tensor;
  /** lora_B, float32 [N, r]. */
  b?: Tensor;
  /** The adapter scale s (see loraScale). Required, even without adapters. */
  scale: number;
  /**
   * PEFT's lora_dropout, in [0, 1) (default 0): applied to the adapter path's input only, with a
   * mask that is a pure function of (seed, element index).
   */
  dropout?: number;
  /**
   * Integer in [0, 2^53) choosing the dropout mask; required when dropout > 0. Use a different
   * seed per layer and per step, and pass the same one to loraBackward.
   */
  seed?: number;
}

export interface LoraResult {
  /** float32 [..., N]. */
  y: Tensor;
  /** drop(x)·Aᵀ, float32 [..., r], saved for the backward; present with adapters. */
  xa?: Tensor;
}

export interface LoraBackwardOptions extends Omit<LoraOptions, "bias"> {
  /** Upstream gradient, float32 [..., N]. */
  dY: Tensor;
  /** The forward's `xa` (required with adapters). */
  xa?: Tensor;
  /** Compute dX (default true). */
  wantDx?: boolean;
  /** Write dX here (like x) instead of allocating it. */
  dX?: Tensor;
  /** Add to `dX` instead of overwriting it. */
  accumulateDx?: boolean;
  /** Accumulate dA into this tensor [r, K] (else a fresh one is returned). */
  dA?: Tensor;
  /** Accumulate dB into this tensor [N, r]. */
  dB?: Tensor;
  /** Compute the base weight's gradient (default: only when `dWeight` is given). */
  wantWeight?: boolean;
  /** Accumulate dWeight into this tensor [N, K]. */
  dWeight?: Tensor;
  /** Compute the bias gradient, colsum(dY) (default: only when `dBias` is given). */
  wantBias?: boolean;
  /** Accumulate dBias into this tensor [N]. */
  dBias?: Tensor;
}

export interface LoraGrads {
  dX?: Tensor;
  dA?: Tensor;
  dB?: Tensor;
  dWeight?: Tensor;
  dBias?: Tensor;
}

export function lora(options: LoraOptions): LoraResult {
  return nativeFunction<(args: LoraOptions) => LoraResult>("lora")(options);
}

/**
 * Gradients of lora(): with dxa = s·dY·B, dB += s·dYᵀ·xa, dA += dxaᵀ·drop(x),
 * dX = dY·W + drop(dxa·A) (the forward's mask and 1/(1 − p)), dWeight += dYᵀ·x, dBias += colsum(dY).
 */
export function loraBackward(options: LoraBackwardOptions): LoraGrads {
  return nativeFunction<(args: LoraBackwardOptions) => LoraGrads>("loraBackward")(options);
}

/**
 * PEFT's adapter scale: alpha / r, or alpha / √r with rsLoRA (use_rslora), for rank r ≥ 1.
 */
export function loraScale(alpha: number, rank: number, useRslora = false): number {
  if (!Number.isFinite(alpha)) throw new RangeError(`loraScale: 'alpha' must be a finite number, got ${alpha}`);
  if (!Number.isInteger(rank) || rank < 1) throw new RangeError(`loraScale: 'rank' must be an integer ≥ 1, got ${rank}`);
  return useRslora ? alpha / Math.sqrt(rank) : alpha / rank;
}
