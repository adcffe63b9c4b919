import {
  floats,
  numThreads,
  rmsNorm,
  rmsNormBackward,
  scope,
  setNumThreads,
  tensor,
} from "../lib";
import { expectClose } from "./helpers/assert";
import { expectGradientMatches, weightedSum } from "./helpers/gradcheck";
import { Rng } from "./helpers/random";
import { expectNoLeak } from "./helpers/memory";

/** Float64 LlamaRMSNorm over rows of length dim: y = w · x / sqrt(mean(x²) + eps). */
function refRmsNorm(x: Float64Array, w: Float64Array, dim: number, eps: number): { y: Float64Array; rstd: Float64Array } {
  const rows = x.length / dim;
  const y = new Float64Array(x.length);
  const rstd = new Float64Array(rows);
  for (let r = 0; r < rows; ++r) {
    let ss = 0;
    for (let j = 0; j < dim; ++j) ss += x[r * dim + j] ** 2;
    rstd[r] = 1 / Math.sqrt(ss / dim + eps);
    for (let j = 0; j < dim; ++j) y[r * dim + j] = w[j] * x[r * dim + j] * rstd[r];
  }
  return { y, rstd };
}

// [name, x shape (last = dim), eps]
const cases: Array<[string, number[], number]> = [
  ["realistic [B, T, D]", [2, 16, 512], 1e-5],
  ["odd dim 5", [7, 5], 1e-6],
  ["Qwen3 per-head q/k norm [B, T, H, head_dim]", [2, 3, 3, 8], 1e-6],
  ["length one", [1, 1], 1e-6],
];

describe("rmsNorm", () => {
  const rng = new Rng(31);

  for (const [name, shape, eps] of cases) {
    it(`matches a float64 reference: ${name}`, () => {
      scope(() => {
        const dim = shape[shape.length - 1];
        const n = shape.reduce((a, b) => a * b, 1);
        const x = rng.normals(n, 2);
        const w = rng.normals(dim);
        const { y, rstd } = rmsNorm(tensor("float32", shape, x), tensor("float32", [dim], w), { eps });
        expect(y.shape).toEqual(shape);
        expect(rstd.shape).toEqual(shape.slice(0, -1));
        const ref = refRmsNorm(x, w, dim, eps);
        expectClose(floats(y), ref.y, { rtol: 1e-5, atol: 1e-6 }, "y");
        expectClose(floats(rstd), ref.rstd, { rtol: 1e-6, atol: 0 }, "rstd");
      });
    });
  }

  it("eps matters for tiny rows and defaults to 1e-6", () => {
    scope(() => {
      // x = [3e-4, 4e-4]: mean(x²) = 12.5e-8, so rstd = 1/sqrt(12.5e-8 + eps).
      const x = tensor("float32", [1, 2], [3e-4, 4e-4]);
      const w = tensor("float32", [2], [1, 1]);
      expectClose(floats(rmsNorm(x, w).rstd), [1 / Math.sqrt(12.5e-8 + 1e-6)], { rtol: 1e-6 });
      expectClose(floats(rmsNorm(x, w, { eps: 1e-2 }).rstd), [1 / Math.sqrt(12.5e-8 + 1e-2)], { rtol: 1e-6 });
      // A zero row gives zeros, not NaN.
      const zero = rmsNorm(tensor("float32", [1, 3]), tensor("float32", [3], [1, 2, 3]));
      expect(Array.from(floats(zero.y))).toEqual([0, 0, 0]);
    });
  });

  const gradCases: Array<[string, number[]]> = [["odd dim 5", [3, 5]], ["Qwen3 q/k norm", [2, 1, 3, 4]], ["length one", [1, 1]]];
  for (const [name, shape] of gradCases) {
    it(`backward matches finite differences: ${name}`, () => {
      scope(() => {
        const dim = shape[shape.length - 1];
        const n = shape.reduce((a, b) => a * b, 1);
        const eps = 1e-5;
        const x = rng.normals(n);
        const wt = rng.normals(dim);
        const g = rng.normals(n);
        const X = tensor("float32", shape, x);
        const W = tensor("float32", [dim], wt);
        const { rstd } = rmsNorm(X, W, { eps });
        const { dX, dWeight } = rmsNormBackward(tensor("float32", shape, g), X, W, rstd);
        expect(dX.shape).toEqual(shape);
        expectGradientMatches(floats(dX), (v) => weightedSum(g, refRmsNorm(v, wt, dim, eps).y), x, { label: "dX" });
        expectGradientMatches(floats(dWeight!), (v) => weightedSum(g, refRmsNorm(x, v, dim, eps).y), wt, { label: "dWeight" });
      });
    });
  }

  it("accumulates: dX with accumulate, dWeight always; wantWeight: false skips dWeight", () => {
    scope(() => {
      const [rows, dim] = [6, 9];
      const x = tensor("float32", [rows, dim], rng.normals(rows * dim));
      const w = tensor("float32", [dim], rng.normals(dim));
      const dY = tensor("float32", [rows, dim], rng.normals(rows * dim));
      const { rstd } = rmsNorm(x, w);
      const fresh = rmsNormBackward(dY, x, w, rstd);
      const dXStart = rng.normals(rows * dim);
      const dWStart = rng.normals(dim);
      const dX = tensor("float32", [rows, dim], dXStart);
      const dWeight = tensor("float32", [dim], dWStart);
      const out = rmsNormBackward(dY, x, w, rstd, { dX, accumulate: true, dWeight });
      expect(out.dX).toBe(dX);
      expect(out.dWeight).toBe(dWeight);
      expectClose(floats(dX), floats(fresh.dX).map((v, i) => v + dXStart[i]), { rtol: 1e-6, atol: 1e-6 });
      expectClose(floats(dWeight), floats(fresh.dWeight!).map((v, i) => v + dWStart[i]), { rtol: 1e-6, atol: 1e-6 });
      // Without accumulate the given dX is overwritten.
      rmsNormBackward(dY, x, w, rstd, { dX, wantWeight: false });
      expectClose(floats(dX), floats(fresh.dX), { rtol: 0, atol: 0 });
      expect(rmsNormBackward(dY, x, w, rstd, { wantWeight: false }).dWeight).toBeUndefined();
    });
  });

  it("dWeight does not depend on the thread count (fixed-order reduction)", () => {
    const threads = numThreads();
    try {
      scope(() => {
        const [rows, dim] = [3001, 40];
        const x = tensor("float32", [rows, dim], rng.normals(rows * dim));
        const w = tensor("float32", [dim], rng.normals(dim));
        const dY = tensor("float32", [rows, dim], rng.normals(rows * dim));
        const { rstd } = rmsNorm(x, w);
        const results = [1, 2, 3].map((t) => {
          setNumThreads(t);
          const g = rmsNormBackward(dY, x, w, rstd);
          return { dX: Buffer.from(floats(g.dX).buffer), dWeight: Array.from(floats(g.dWeight!)) };
        });
        for (const r of results.slice(1)) {
          expect(r.dWeight).toEqual(results[0].dWeight);
          expect(r.dX.equals(results[0].dX)).toBe(true);
        }
      });
    } finally {
      setNumThreads(threads);
    }
  });

  it("rejects bad shapes, eps and aliasing", () => {
    scope(() => {
      const x = tensor("float32", [2, 4]);
      const w = tensor("float32", [4]);
      expect(() => rmsNorm(tensor("float32", [4]), w)).toThrow(/rmsNorm: 'x' must have rank ≥ 2/);
      expect(() => rmsNorm(x, tensor("float32", [3]))).toThrow(/'weight' must have shape \[D\] \(D = 4 from 'x'\)/);
      expect(() => rmsNorm(x, w, { eps: 0 })).toThrow(/'eps' must be > 0/);
      expect(() => rmsNorm(x, w, { eps: 1e-50 })).toThrow(/'eps' must be > 0 in float32/);
      expect(() => rmsNorm(x, w, { eps: -1 })).toThrow(/'eps' must be in/);
      expect(() => rmsNorm(x, w, { eps: NaN })).toThrow(/'eps' must be finite/);
      const { rstd } = rmsNorm(x, w);
      expect(() => rmsNormBackward(tensor("float32", [2, 5]), x, w, rstd)).toThrow(/'dY' must have shape \[B0, D\]/);
      expect(() => rmsNormBackward(x, x, w, tensor("float32", [3]))).toThrow(/'rstd' must have shape \[B0\]/);
      const dY = tensor("float32", [2, 4]);
      expect(() => rmsNormBackward(dY, x, w, rstd, { dX: dY })).toThrow(/'dX' and 'dY' must not share memory/);
      expect(() => rmsNormBackward(dY, x, w, rstd, { accumulate: true })).toThrow(/needs a 'dX' tensor/);
      expect(() => rmsNormBackward(dY, x, w, rstd, { dWeight: w })).toThrow(/'dWeight' and 'weight' must not share memory/);
    });
  });

  it("leaks no native memory", () => {
        expectNoLeak(() => {
      const x = tensor("float32", [300, 70], rng.normals(300 * 70));
      const w = tensor("float32", [70], rng.normals(70));
      const { y, rstd } = rmsNorm(x, w);
      rmsNormBackward(y, x, w, rstd);
    });
  });
});
