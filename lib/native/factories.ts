/** Creating tensors and reading the addon's memory and thread settings. */
import { native } from "./addon";
import { DType, MemoryStats, Tensor } from "./tensor";

/**
 * A new tensor filled from `data` (row-major, one value per element; omitted = zeros).
 * bfloat16 accepts float values (rounded to nearest even) or a Uint16Array of raw bits.
 */
export function tensor(dtype: DType, shape: readonly number[], data?: ArrayLike<number>): Tensor {
  return native().tensor(dtype, shape, data);
}

export function zeros(dtype: DType, shape: readonly number[]): Tensor {
  return native().zeros(dtype, shape);
}

/** Native memory currently allocated, and the peak since resetPeakBytes(). */
export function memoryStats(): MemoryStats {
  return native().memoryStats();
}

export function resetPeakBytes(): void {
  native().resetPeakBytes();
}

/** Threads used by CPU kernels (RLHF_NUM_THREADS, default all cores). */
export function numThreads(): number {
  return native().numThreads();
}

export function setNumThreads(n: number): void {
  native().setNumThreads(n);
}
