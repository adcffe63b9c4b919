/** Numeric comparisons that report the worst elements instead of a bare "not equal". */

export interface Tolerance {
  /** Relative tolerance (default 1e-5). */
  rtol?: number;
  /** Absolute tolerance (default 1e-6). */
  atol?: number;
}

/**
 * Fails unless |actual − expected| ≤ atol + rtol·|expected| elementwise; NaN must match NaN and
 * infinities must match exactly.
 */
export function expectClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: Tolerance = {},
  label = "values",
): void {
  const rtol = tol.rtol ?? 1e-5;
  const atol = tol.atol ?? 1e-6;
  if (actual.length !== expected.length) {
    throw new Error(`${label}: length ${actual.length} != expected ${expected.length}`);
  }
  const bad: string[] = [];
  let worst = 0;
  for (let i = 0; i < actual.length; ++i) {
    const a = actual[i];
    const e = expected[i];
    let ok: boolean;
    if (Number.isNaN(e)) ok = Number.isNaN(a);
    else if (!Number.isFinite(e)) ok = a === e;
    else ok = Math.abs(a - e) <= atol + rtol * Math.abs(e);
    if (!ok) {
      worst = Math.max(worst, Math.abs(a - e));
      if (bad.length < 8) bad.push(`[${i}] got ${a}, expected ${e} (diff ${a - e})`);
      else if (bad.length === 8) bad.push("...");
    }
  }
  if (bad.length) {
    throw new Error(
      `${label}: mismatches with rtol=${rtol}, atol=${atol} (worst |diff| ${worst}):\n  ${bad.join("\n  ")}`,
    );
  }
}

/** The same comparison for one scalar. */
export function expectScalarClose(actual: number, expected: number, tol: Tolerance = {}, label = "value"): void {
  expectClose([actual], [expected], tol, label);
}
