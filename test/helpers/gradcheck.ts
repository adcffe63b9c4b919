/**
 * Finite-difference gradient checks against float64 references.
 *
 * A test writes its op's forward in plain float64 TypeScript, reduces the output to a scalar
 * L = Σ w·y with random weights w, and passes w as the upstream gradient to the native backward.
 * numericGradient() differentiates the float64 L by central differences, which is accurate to
 * ~1e-9, so the native float32 gradient can be held to a float32-sized tolerance.
 */
import { expectClose, Tolerance } from "./assert";

/** Σ w·y in float64. */
export function weightedSum(w: ArrayLike<number>, y: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < y.length; ++i) s += w[i] * y[i];
  return s;
}

/**
 * Central differences (f(x + h·e_i) − f(x − h·e_i)) / 2h for each index in `indices` (default
 * all). `x` is perturbed in place and restored.
 */
export function numericGradient(
  f: (x: Float64Array) => number,
  x: Float64Array,
  indices?: readonly number[],
  h = 1e-5,
): Map<number, number> {
  const out = new Map<number, number>();
  for (const i of indices ?? Array.from(x.keys())) {
    const saved = x[i];
    x[i] = saved + h;
    const plus = f(x);
    x[i] = saved - h;
    const minus = f(x);
    x[i] = saved;
    out.set(i, (plus - minus) / (2 * h));
  }
  return out;
}

/** Up to `count` distinct indices in [0, n), evenly spread (all of them when n ≤ count). */
export function sampleIndices(n: number, count: number): number[] {
  if (n <= count) return Array.from({ length: n }, (_, i) => i);
  const out: number[] = [];
  for (let j = 0; j < count; ++j) out.push(Math.floor((j * n) / count + (j % 3)) % n);
  return [...new Set(out)];
}

/**
 * Checks an analytic gradient (from the native backward) against central differences of the
 * float64 scalar function `f` at `x`, on up to `maxChecks` elements.
 */
export function expectGradientMatches(
  analytic: ArrayLike<number>,
  f: (x: Float64Array) => number,
  x: Float64Array,
  options: Tolerance & { maxChecks?: number; h?: number; label?: string } = {},
): void {
  const indices = sampleIndices(x.length, options.maxChecks ?? 64);
  const numeric = numericGradient(f, x, indices, options.h);
  const got = indices.map((i) => analytic[i]);
  const want = indices.map((i) => numeric.get(i) as number);
  expectClose(got, want, { rtol: options.rtol ?? 1e-3, atol: options.atol ?? 1e-4 }, options.label ?? "gradient");
}
