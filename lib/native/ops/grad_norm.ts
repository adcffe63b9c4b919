/** The global gradient norm and clipping by it (torch.nn.utils.clip_grad_norm_). */
import { nativeFunction } from "../addon";
import { Tensor } from "../tensor";

export interface GradNormOptions {
  /** float32 tensors of any shapes. */
  tensors: Tensor[];
}

export interface ClipGradNormOptions extends GradNormOptions {
  /** > 0. */
  maxNorm: number;
}

export interface ClipGradNormResult {
  /** sqrt(Σ x²) over every tensor before clipping, computed in float64. */
  totalNorm: number;
  /** The factor the tensors were multiplied by: min(1, maxNorm / (totalNorm + 1e-6)). */
  clipCoef: number;
}

/** sqrt(Σ x²) over every element of every tensor, accumulated in float64. */
export function gradNorm(options: GradNormOptions): number {
  return nativeFunction<(args: GradNormOptions) => number>("gradNorm")(options);
}

/**
 * Scales every tensor in place by min(1, maxNorm / (totalNorm + 1e-6)), as clip_grad_norm_. When
 * totalNorm is not finite (an inf or NaN gradient) nothing is scaled and clipCoef is 1: skip the
 * optimizer step (PyTorch would multiply by 0 or NaN and wipe every gradient).
 */
export function clipGradNorm(options: ClipGradNormOptions): ClipGradNormResult {
  return nativeFunction<(args: ClipGradNormOptions) => ClipGradNormResult>("clipGradNorm")(options);
}
