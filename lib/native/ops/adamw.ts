/** AdamW (torch.optim.AdamW semantics) over lists of tensors, in place. */
import { nativeFunction } from "../addon";
import { Tensor } from "../tensor";

export interface AdamWOptions {
  /** Updated in place; float32. */
  params: Tensor[];
  /** grads[i] has the shape of params[i]. */
  grads: Tensor[];
  /** First moments (exp_avg), updated in place; zeros before the first step. */
  m: Tensor[];
  /** Second moments (exp_avg_sq), updated in place; zeros before the first step. */
  v: Tensor[];
  /** Learning rate ≥ 0 (this step's, after the schedule). */
  lr: number;
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.999. */
  beta2?: number;
  /** Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay: p ← p − lr·weightDecay·p before the Adam update. Default 0.01. */
  weightDecay?: number;
  /** The step number t ≥ 1, counting this step (bias corrections 1 − β^t). */
  step: number;
}

/**
 * One step: p ← p·(1 − lr·wd); m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
 * p ← p − lr/(1 − β1^t) · m / (sqrt(v)/sqrt(1 − β2^t) + eps). Every tensor written (params, m, v)
 * must have its own memory.
 */
export function adamw(options: AdamWOptions): void {
  nativeFunction<(args: AdamWOptions) => void>("adamw")(options);
}
