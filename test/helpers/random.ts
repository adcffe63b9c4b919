/** Seeded random numbers for tests: the same seed gives the same inputs on every machine. */

export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }

  /** Uniform in [0, 1) (mulberry32). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Standard normal (Box-Muller). */
  normal(): number {
    const u = 1 - this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  int(lo: number, hiExclusive: number): number {
    return lo + Math.floor(this.next() * (hiExclusive - lo));
  }

  /** `n` normals times `scale`, as float64 (round through Math.fround for float32 inputs). */
  normals(n: number, scale = 1): Float64Array {
    const out = new Float64Array(n);
    for (let i = 0; i < n; ++i) out[i] = Math.fround(this.normal() * scale);
    return out;
  }

  uniforms(n: number, lo: number, hi: number): Float64Array {
    const out = new Float64Array(n);
    for (let i = 0; i < n; ++i) out[i] = Math.fround(this.uniform(lo, hi));
    return out;
  }

  ints(n: number, lo: number, hiExclusive: number): Int32Array {
    const out = new Int32Array(n);
    for (let i = 0; i < n; ++i) out[i] = this.int(lo, hiExclusive);
    return out;
  }
}
