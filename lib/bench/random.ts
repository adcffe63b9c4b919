/** Deterministic benchmark inputs (an LCG: fast, and the same on every machine). */

/** `n` values uniform in [lo, hi). */
export function randomUniform(n: number, seed: number, lo: number, hi: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; ++i) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = lo + ((hi - lo) * s) / 4294967296;
  }
  return out;
}

/** `n` values uniform in [−scale/2, scale/2). */
export function randomData(n: number, seed: number, scale = 1): Float32Array {
  return randomUniform(n, seed, -scale / 2, scale / 2);
}

/** `n` integers in [0, hi). */
export function randomIds(n: number, hi: number, seed: number): Int32Array {
  const out = new Int32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; ++i) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = Math.floor((s / 4294967296) * hi);
  }
  return out;
}
