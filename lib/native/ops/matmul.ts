/**
 * Matmul: C = alpha · op(A) · op(B) (+ C when accumulating), batched, and its backward.
 * A is [M, K] ([K, M] with transA) or [batch, ., .]; B is [K, N] ([N, K] with transB) or batched;
 * a rank-2 operand is broadcast over the other's batch. A and B are float32, or bfloat16 on the CUDA
 * backend (float32 accumulation); the result has their dtype, and a given `out` (or dA/dB) may also
 * be float32 when they are bfloat16.
 */
import { nativeFunction } from "../addon";
import { Tensor } from "../tensor";

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  /** Write into this tensor ([M, N] or [batch, M, N]) instead of allocating one. */
  out?: Tensor;
  /** Add to `out` instead of overwriting it. */
  accumulate?: boolean;
}

type MatmulNative = (args: { a: Tensor; b: Tensor } & MatmulOptions) => Tensor;

export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  return nativeFunction<MatmulNative>("matmul")({ a, b, ...options });
}

/** The textbook single-threaded triple loop with the same contract: a baseline for benchmarks. */
export function matmulNaive(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  return nativeFunction<MatmulNative>("matmulNaive")({ a, b, ...options });
}

export interface MatmulBackwardOptions {
  transA?: boolean;
  transB?: boolean;
  /** Compute dA (default true). */
  wantA?: boolean;
  /** Compute dB (default true). */
  wantB?: boolean;
  /** Accumulate dA into this tensor (shape of a). */
  dA?: Tensor;
  /** Accumulate dB into this tensor (shape of b). */
  dB?: Tensor;
}

export interface MatmulGrads {
  dA?: Tensor;
  dB?: Tensor;
}

type MatmulBackwardNative = (args: { a: Tensor; b: Tensor; dC: Tensor } & MatmulBackwardOptions) => MatmulGrads;

/** Gradients of C = op(A)·op(B) given dC; a broadcast operand's gradient is summed over the batch. */
export function matmulBackward(a: Tensor, b: Tensor, dC: Tensor, options: MatmulBackwardOptions = {}): MatmulGrads {
  return nativeFunction<MatmulBackwardNative>("matmulBackward")({ a, b, dC, ...options });
}
