import { floats, lora, loraBackward, loraScale, nativeFunction, scope, tensor } from "../lib";
import type { Tensor } from "../lib";
import { expectClose } from "./helpers/assert";
import { expectGradientMatches, weightedSum } from "./helpers/gradcheck";
import { Rng } from "./helpers/random";
import { expectNoLeak } from "./helpers/memory";

const MASK64 = (1n << 64n) - 1n;

/** splitmix64's finaliser, as documented in src/cpu/dropout_mask.h, written again with BigInt. */
function mix64(z: bigint): bigint {
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

/** The documented dropout mask: 1 = kept, for `count` elements. */
function refMask(seed: number, count: number, p: number): Float64Array {
  const key = mix64(BigInt(seed));
  const threshold = Math.floor(Math.fround(p) * 4294967296);
  const mask = new Float64Array(count);
  for (let i = 0; i < count; ++i) {
    const h = mix64((key + BigInt(i + 1) * 0x9e3779b97f4a7c15n) & MASK64);
    mask[i] = Number(h >> 32n) >= threshold ? 1 : 0;
  }
  return mask;
}

interface LoraRef {
  x: Float64Array; w: Float64Array; bias?: Float64Array; a?: Float64Array; b?: Float64Array;
  m: number; k: number; n: number; r: number; scale: number;
  /** Keep mask over x's elements and p, for dropout. */
  mask?: Float64Array; p?: number;
}

/** Float64 y = x·Wᵀ + bias + s · (drop(x)·Aᵀ)·Bᵀ, the adapter product associated as written. */
function refLora(o: LoraRef): Float64Array {
  const { x, w, m, k, n, r } = o;
  const y = new Float64Array(m * n);
  const xd = o.mask ? x.map((v, i) => (v * o.mask![i]) / (1 - o.p!)) : x;
  const xa = new Float64Array(m * r);
  for (let i = 0; i < m; ++i) {
    for (let j = 0; j < r; ++j) {
      let s = 0;
      for (let p = 0; p < k; ++p) s += xd[i * k + p] * o.a![j * k + p];
      xa[i * r + j] = s;
    }
    for (let c = 0; c < n; ++c) {
      let s = o.bias ? o.bias[c] : 0;
      for (let p = 0; p < k; ++p) s += x[i * k + p] * w[c * k + p];
      let adapter = 0;
      for (let j = 0; j < r; ++j) adapter += xa[i * r + j] * o.b![c * r + j];
      y[i * n + c] = s + o.scale * adapter;
    }
  }
  return y;
}

const t32 = (shape: number[], data?: ArrayLike<number>): Tensor => tensor("float32", shape, data);

// [name, x shape (last = K), N, r, bias]
const cases: Array<[string, number[], number, number, boolean]> = [
  ["realistic", [2, 32, 256], 192, 16, false],
  ["odd: rank 3, K 5, with bias", [2, 3, 5], 7, 3, true],
  ["length one, rank 1", [1, 4], 9, 1, true],
];

describe("lora", () => {
  const rng = new Rng(41);

  for (const [name, xShape, n, r, withBias] of cases) {
    for (const p of [0, 0.25]) {
      it(`forward matches a float64 reference: ${name}, dropout ${p}`, () => {
        scope(() => {
          const k = xShape[xShape.length - 1];
          const m = xShape.reduce((a, b) => a * b, 1) / k;
          const x = rng.normals(m * k);
          const w = rng.normals(n * k, 0.1);
          const a = rng.normals(r * k, 0.1);
          const b = rng.normals(n * r, 0.1);
          const bias = withBias ? rng.normals(n) : undefined;
          const seed = 1234;
          const { y, xa } = lora({
            x: t32(xShape, x), weight: t32([n, k], w), bias: bias && t32([n], bias), a: t32([r, k], a),
            b: t32([n, r], b), scale: 2.5, dropout: p, seed,
          });
          expect(y.shape).toEqual([...xShape.slice(0, -1), n]);
          expect(xa!.shape).toEqual([...xShape.slice(0, -1), r]);
          const mask = p > 0 ? refMask(seed, m * k, p) : undefined;
          const want = refLora({ x, w, bias, a, b, m, k, n, r, scale: 2.5, mask, p });
          expectClose(floats(y), want, { rtol: 1e-4, atol: 1e-4 });
        });
      });
    }
  }

  it("rank 0 (no adapters, or r = 0 adapters) is the plain linear layer; B = 0 changes nothing", () => {
    scope(() => {
      const [m, k, n] = [6, 5, 4];
      const x = rng.normals(m * k);
      const w = rng.normals(n * k);
      const bias = rng.normals(n);
      const base = { x: t32([m, k], x), weight: t32([n, k], w), bias: t32([n], bias), scale: 3 };
      const plain = lora(base);
      expect(plain.xa).toBeUndefined();
      const want = new Float64Array(m * n);
      for (let i = 0; i < m; ++i) {
        for (let c = 0; c < n; ++c) {
          let s = bias[c];
          for (let p = 0; p < k; ++p) s += x[i * k + p] * w[c * k + p];
          want[i * n + c] = s;
        }
      }
      expectClose(floats(plain.y), want, { rtol: 1e-5, atol: 1e-5 });
      const zeroRank = lora({ ...base, a: t32([0, k]), b: t32([n, 0]) });
      expect(zeroRank.xa!.shape).toEqual([m, 0]);
      expect(Array.from(floats(zeroRank.y))).toEqual(Array.from(floats(plain.y)));
      // PEFT initialises B to zeros: a fresh adapter leaves the layer's output unchanged.
      const fresh = lora({ ...base, a: t32([2, k], rng.normals(2 * k)), b: t32([n, 2]), dropout: 0.5, seed: 9 });
      expect(Array.from(floats(fresh.y))).toEqual(Array.from(floats(plain.y)));
    });
  });

  describe("dropout mask", () => {
    // With A = I (r = K), B = 0 and x = 1, xa = drop(x) = mask / (1 − p): the mask itself.
    function maskOf(m: number, k: number, p: number, seed: number): Float32Array {
      const eye = new Float64Array(k * k);
      for (let i = 0; i < k; ++i) eye[i * k + i] = 1;
      return scope(() => {
        const { xa } = lora({
          x: t32([m, k], new Float64Array(m * k).fill(1)), weight: t32([1, k]), a: t32([k, k], eye), b: t32([1, k]),
          scale: 1, dropout: p, seed,
        });
        return floats(xa!);
      });
    }

    it("is the documented hash of (seed, element index), scaled by 1/(1 − p)", () => {
      const [m, k, p, seed] = [8, 32, 0.3, 77];
      const got = maskOf(m, k, p, seed);
      const want = refMask(seed, m * k, p).map((keep) => (keep ? Math.fround(1 / Math.fround(1 - p)) : 0));
      expect(Array.from(got)).toEqual(Array.from(want));
    });

    it("is reproducible for a seed, different for another, and keeps ≈ 1 − p", () => {
      const [m, k, p] = [128, 256, 0.25];
      const first = maskOf(m, k, p, 2024);
      expect(Buffer.from(maskOf(m, k, p, 2024).buffer).equals(Buffer.from(first.buffer))).toBe(true);
      const other = maskOf(m, k, p, 2025);
      let agree = 0;
      let kept = 0;
      for (let i = 0; i < first.length; ++i) {
        if ((first[i] !== 0) === (other[i] !== 0)) agree++;
        if (first[i] !== 0) kept++;
      }
      // Independent masks agree on p² + (1 − p)² = 62.5% of the elements; 32768 elements give
      // a standard deviation of 0.24% for the keep rate.
      expect(agree / first.length).toBeGreaterThan(0.6);
      expect(agree / first.length).toBeLessThan(0.65);
      expect(Math.abs(kept / first.length - (1 - p))).toBeLessThan(0.01);
      // Seed 0 is a seed like any other (no degenerate all-kept mask).
      const zeroSeed = maskOf(m, k, p, 0);
      expect(Math.abs(zeroSeed.filter((v) => v !== 0).length / zeroSeed.length - (1 - p))).toBeLessThan(0.01);
    });
  });

  // [name, x shape, N, r, dropout, bias]
  const gradCases: Array<[string, number[], number, number, number, boolean]> = [
    ["rank 3 with bias", [2, 2, 5], 7, 3, 0, true],
    ["dropout 0.3, fixed seed", [5, 6], 4, 3, 0.3, true],
    ["length one, dropout 0.5", [1, 1, 8], 3, 2, 0.5, false],
  ];
  for (const [name, xShape, n, r, p, withBias] of gradCases) {
    it(`backward matches finite differences: ${name}`, () => {
      scope(() => {
        const k = xShape[xShape.length - 1];
        const m = xShape.reduce((u, v) => u * v, 1) / k;
        const x = rng.normals(m * k);
        const w = rng.normals(n * k);
        const a = rng.normals(r * k);
        const b = rng.normals(n * r);
        const bias = withBias ? rng.normals(n) : undefined;
        const g = rng.normals(m * n);
        const [scale, seed] = [1.7, 4242];
        const inputs = {
          x: t32(xShape, x), weight: t32([n, k], w), a: t32([r, k], a), b: t32([n, r], b), scale, dropout: p, seed,
        };
        const { xa } = lora({ ...inputs, bias: bias && t32([n], bias) });
        const grads = loraBackward({
          ...inputs, xa, dY: t32([...xShape.slice(0, -1), n], g), wantWeight: true, wantBias: withBias,
        });
        const mask = p > 0 ? refMask(seed, m * k, p) : undefined;
        const L = (o: Partial<LoraRef>) =>
          weightedSum(g, refLora({ x, w, bias, a, b, m, k, n, r, scale, mask, p, ...o }));
        expect(grads.dX!.shape).toEqual(xShape);
        expectGradientMatches(floats(grads.dX!), (v) => L({ x: v }), x, { label: "dX" });
        expectGradientMatches(floats(grads.dA!), (v) => L({ a: v }), a, { label: "dA" });
        expectGradientMatches(floats(grads.dB!), (v) => L({ b: v }), b, { label: "dB" });
        expectGradientMatches(floats(grads.dWeight!), (v) => L({ w: v }), w, { label: "dWeight" });
        if (bias) expectGradientMatches(floats(grads.dBias!), (v) => L({ bias: v }), bias, { label: "dBias" });
      });
    });
  }

  it("rank 0 backward: dX = dY·W, dWeight and dBias by finite differences, no adapter gradients", () => {
    scope(() => {
      const [m, k, n] = [3, 5, 4];
      const x = rng.normals(m * k);
      const w = rng.normals(n * k);
      const bias = rng.normals(n);
      const g = rng.normals(m * n);
      const grads = loraBackward({
        x: t32([m, k], x), weight: t32([n, k], w), scale: 1, dY: t32([m, n], g), wantWeight: true, wantBias: true,
      });
      expect(grads.dA).toBeUndefined();
      expect(grads.dB).toBeUndefined();
      const L = (xv: Float64Array, wv: Float64Array, bv: Float64Array) =>
        weightedSum(g, refLora({ x: xv, w: wv, bias: bv, a: new Float64Array(0), b: new Float64Array(0), m, k, n, r: 0, scale: 1 }));
      expectGradientMatches(floats(grads.dX!), (v) => L(v, w, bias), x, { label: "dX" });
      expectGradientMatches(floats(grads.dWeight!), (v) => L(x, v, bias), w, { label: "dWeight" });
      expectGradientMatches(floats(grads.dBias!), (v) => L(x, w, v), bias, { label: "dBias" });
    });
  });

  it("accumulates into given gradients; dX only with accumulateDx; dWeight/dBias only when asked", () => {
    scope(() => {
      const [m, k, n, r] = [4, 6, 5, 2];
      const inputs = {
        x: t32([m, k], rng.normals(m * k)), weight: t32([n, k], rng.normals(n * k)), a: t32([r, k], rng.normals(r * k)),
        b: t32([n, r], rng.normals(n * r)), scale: 0.5, dropout: 0.2, seed: 5,
      };
      const { xa } = lora(inputs);
      const dY = t32([m, n], rng.normals(m * n));
      const fresh = loraBackward({ ...inputs, xa, dY, wantWeight: true, wantBias: true });
      const starts = {
        dX: rng.normals(m * k), dA: rng.normals(r * k), dB: rng.normals(n * r), dWeight: rng.normals(n * k), dBias: rng.normals(n),
      };
      const targets = {
        dX: t32([m, k], starts.dX), dA: t32([r, k], starts.dA), dB: t32([n, r], starts.dB),
        dWeight: t32([n, k], starts.dWeight), dBias: t32([n], starts.dBias),
      };
      const out = loraBackward({ ...inputs, xa, dY, ...targets, accumulateDx: true });
      for (const key of ["dX", "dA", "dB", "dWeight", "dBias"] as const) {
        expect(out[key]).toBe(targets[key]);
        expectClose(floats(targets[key]), floats(fresh[key]!).map((v, i) => v + starts[key][i]), { rtol: 1e-5, atol: 1e-5 }, key);
      }
      // dX without accumulateDx is overwritten.
      loraBackward({ ...inputs, xa, dY, dX: targets.dX });
      expectClose(floats(targets.dX), floats(fresh.dX!), { rtol: 1e-6, atol: 1e-6 });
      const minimal = loraBackward({ ...inputs, xa, dY, wantDx: false });
      expect(Object.keys(minimal).sort()).toEqual(["dA", "dB"]);
    });
  });

  it("loraScale is alpha/r, or alpha/√r with rsLoRA", () => {
    expect(loraScale(16, 8)).toBe(2);
    expect(loraScale(32, 16, false)).toBe(2);
    expect(loraScale(16, 4, true)).toBe(8);
    expect(loraScale(8, 3, true)).toBeCloseTo(8 / 1.7320508075688772, 12);
    expect(() => loraScale(16, 0)).toThrow(/'rank' must be an integer ≥ 1/);
    expect(() => loraScale(16, 2.5)).toThrow(/'rank'/);
    expect(() => loraScale(NaN, 4)).toThrow(/'alpha'/);
  });

  it("rejects invalid arguments with messages naming the key", () => {
    scope(() => {
      const [m, k, n, r] = [3, 4, 5, 2];
      const base = { x: t32([m, k]), weight: t32([n, k]), a: t32([r, k]), b: t32([n, r]), scale: 1 };
      expect(() => lora({ ...base, dropout: 1, seed: 1 })).toThrow(/lora: 'dropout' must be in \[0, 1\)/);
      expect(() => lora({ ...base, dropout: -0.1, seed: 1 })).toThrow(/'dropout' must be in/);
      expect(() => lora({ ...base, dropout: 1 - 1e-9, seed: 1 })).toThrow(/'dropout' must be in \[0, 1\) \(and round below 1 in float32\), got 0.999999999/);
      expect(() => lora({ ...base, dropout: 0.1 })).toThrow(/'seed' is required when 'dropout' > 0/);
      expect(() => lora({ ...base, dropout: 0.1, seed: 1.5 })).toThrow(/'seed' must be an integer/);
      expect(() => lora({ ...base, seed: -1 })).toThrow(/'seed' must be in/);
      expect(() => lora({ ...base, scale: Infinity })).toThrow(/'scale' must be finite/);
      expect(() => lora({ ...base, b: undefined })).toThrow(/'a' and 'b' .* must be given together/);
      expect(() => lora({ ...base, b: t32([n, r + 1]) })).toThrow(/'b' must have shape \[N, r\] \(N = 5 from 'weight', r = 2 from 'a'\)/);
      expect(() => lora({ ...base, weight: t32([n, k + 1]) })).toThrow(/'weight' must have shape \[N, K\]/);
      expect(() => lora({ ...base, x: t32([k]) })).toThrow(/'x' must have rank ≥ 2/);
      expect(() => lora({ ...base, bias: t32([n + 1]) })).toThrow(/'bias' must have shape \[N\]/);
      const raw = nativeFunction<(o: object) => unknown>("lora");
      expect(() => raw({ ...base, dropuot: 0.1 })).toThrow(/unknown option 'dropuot'/);
      expect(() => raw({ x: base.x, weight: base.weight })).toThrow(/'scale' must be a number/);
      const { xa } = lora(base);
      const dY = t32([m, n]);
      expect(() => loraBackward({ ...base, dY })).toThrow(/'xa' \(returned by lora\(\)\) is required/);
      expect(() => loraBackward({ ...base, a: undefined, b: undefined, xa, dY })).toThrow(/'xa' was given without/);
      expect(() => loraBackward({ ...base, xa, dY: t32([m, n + 1]) })).toThrow(/'dY' must have shape/);
      expect(() => loraBackward({ ...base, xa, dY, dX: base.x })).toThrow(/'dX' and 'x' must not share memory/);
      expect(() => loraBackward({ ...base, xa, dY, dA: base.a })).toThrow(/'dA' and 'a' must not share memory/);
      expect(() => loraBackward({ ...base, xa, dY, wantWeight: false, dWeight: t32([n, k]) })).toThrow(/'wantWeight' is false/);
      expect(() => loraBackward({ ...base, xa, dY, accumulateDx: true })).toThrow(/needs a 'dX' tensor/);
    });
  });

  it("leaks no native memory (with dropout scratch)", () => {
        expectNoLeak(() => {
      const [m, k, n, r] = [64, 48, 40, 4];
      const inputs = {
        x: t32([m, k], rng.normals(m * k)), weight: t32([n, k], rng.normals(n * k)), a: t32([r, k], rng.normals(r * k)),
        b: t32([n, r], rng.normals(n * r)), scale: 2, dropout: 0.1, seed: 3,
      };
      const { y, xa } = lora({ ...inputs, bias: t32([n], rng.normals(n)) });
      loraBackward({ ...inputs, xa, dY: y, wantWeight: true, wantBias: true });
    });
  });
});
