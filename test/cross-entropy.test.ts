import { crossEntropy, crossEntropyBackward, floats, memoryStats, scope, tensor } from "../lib";
import { expectClose, expectScalarClose } from "./helpers/assert";
import { expectGradientMatches } from "./helpers/gradcheck";
import { Rng } from "./helpers/random";

const IGNORE = -100;

/** Naive float64 per-row lse and nll (both 0 for ignored rows). */
function reference(logits: Float64Array, targets: Int32Array, n: number, v: number, ignoreIndex = IGNORE) {
  const nll = new Float64Array(n);
  const lse = new Float64Array(n);
  let total = 0;
  let count = 0;
  for (let i = 0; i < n; ++i) {
    if (targets[i] === ignoreIndex) continue;
    const row = logits.subarray(i * v, (i + 1) * v);
    const m = Math.max(...row);
    let s = 0;
    for (const x of row) s += Math.exp(x - m);
    lse[i] = m + Math.log(s);
    nll[i] = lse[i] - row[targets[i]];
    total += nll[i];
    ++count;
  }
  return { nll, lse, sum: total, mean: total / Math.max(count, 1), count };
}

function withIgnored(rng: Rng, n: number, v: number, fraction: number): Int32Array {
  const t = rng.ints(n, 0, v);
  for (let i = 0; i < n; ++i) if (rng.next() < fraction) t[i] = IGNORE;
  return t;
}

describe("crossEntropy", () => {
  const rng = new Rng(3);

  it("is exact on hand-computed values", () => {
    scope(() => {
      // Row 0: logits [1, 2, 3], target 2. lse = log(e + e² + e³) = 3 + log(e⁻² + e⁻¹ + 1)
      //   = 3 + log(0.1353352832 + 0.3678794412 + 1) = 3 + log(1.5032147244) = 3.4076059644,
      //   nll = lse − 3 = 0.4076059644.
      // Row 1: ignored (nll = lse = 0, not counted). Row 2: logits [0, 0, 0], target 0: nll = log 3 = 1.0986122887.
      const logits = tensor("float32", [3, 3], [1, 2, 3, 5, 6, 7, 0, 0, 0]);
      const targets = tensor("int32", [3], [2, IGNORE, 0]);
      const mean = crossEntropy({ logits, targets });
      expect(mean.count).toBe(2);
      expectClose(floats(mean.nll), [0.4076059644, 0, 1.0986122887], { rtol: 1e-6 });
      expectClose(floats(mean.lse), [3.4076059644, 0, 1.0986122887], { rtol: 1e-6 });
      expectScalarClose(mean.loss, (0.4076059644 + 1.0986122887) / 2, { rtol: 1e-6 });
      const sum = crossEntropy({ logits, targets, reduction: "sum" });
      expectScalarClose(sum.loss, 0.4076059644 + 1.0986122887, { rtol: 1e-6 });

      // dLogits (mean over 2 tokens): row 0 = (softmax − onehot) / 2 with softmax = e^(z − lse).
      const d = floats(crossEntropyBackward({ logits, targets, lse: mean.lse, count: mean.count }));
      const p = [1, 2, 3].map((z) => Math.exp(z - 3.4076059644));
      expectClose(d, [p[0] / 2, p[1] / 2, (p[2] - 1) / 2, 0, 0, 0, (1 / 3 - 1) / 2, 1 / 6, 1 / 6], { rtol: 1e-6, atol: 1e-7 });
    });
  });

  for (const [name, n, v, fraction] of [
    ["odd V=259, N=13 with ignored tokens", 13, 259, 0.4],
    ["N=1, V=2", 1, 2, 0],
    ["realistic N=64, V=5000", 64, 5000, 0.3],
  ] as const) {
    it(`matches a float64 reference: ${name}`, () => {
      scope(() => {
        const x = rng.normals(n * v, 3);
        const t = withIgnored(rng, n, v, fraction);
        const want = reference(x, t, n, v);
        const logits = tensor("float32", [n, v], x);
        const targets = tensor("int32", [n], t);
        const mean = crossEntropy({ logits, targets });
        expect(mean.count).toBe(want.count);
        expectClose(floats(mean.nll), want.nll, { rtol: 1e-5, atol: 1e-5 }, "nll");
        expectClose(floats(mean.lse), want.lse, { rtol: 1e-5, atol: 1e-5 }, "lse");
        expectScalarClose(mean.loss, want.mean, { rtol: 1e-5 }, "mean loss");
        expectScalarClose(crossEntropy({ logits, targets, reduction: "sum" }).loss, want.sum, { rtol: 1e-5 }, "sum loss");
      });
    });
  }

  it("handles a custom ignoreIndex and an all-ignored batch (count 0, loss 0, zero gradient)", () => {
    scope(() => {
      const [n, v] = [4, 7];
      const x = rng.normals(n * v);
      const logits = tensor("float32", [n, v], x);
      const custom = crossEntropy({ logits, targets: tensor("int32", [n], [3, 5, 3, 1]), ignoreIndex: 3 });
      const want = reference(x, Int32Array.from([3, 5, 3, 1]), n, v, 3);
      expect(custom.count).toBe(2);
      expectScalarClose(custom.loss, want.mean, { rtol: 1e-5 });

      const targets = tensor("int32", [n], [IGNORE, IGNORE, IGNORE, IGNORE]);
      for (const reduction of ["mean", "sum"] as const) {
        const r = crossEntropy({ logits, targets, reduction });
        expect(r.count).toBe(0);
        expect(r.loss).toBe(0);
        expect(Array.from(floats(r.nll))).toEqual([0, 0, 0, 0]);
        const d = crossEntropyBackward({ logits, targets, lse: r.lse, count: r.count, reduction });
        expect(floats(d).every((g) => g === 0)).toBe(true);
      }
    });
  });

  for (const reduction of ["mean", "sum"] as const) {
    it(`backward matches finite differences (${reduction}, gradLoss 1.7, ignored rows)`, () => {
      scope(() => {
        const [n, v] = [6, 37];
        const x = rng.normals(n * v, 2);
        const t = withIgnored(rng, n, v, 0.35);
        const logits = tensor("float32", [n, v], x);
        const targets = tensor("int32", [n], t);
        const fwd = crossEntropy({ logits, targets, reduction });
        const d = crossEntropyBackward({ logits, targets, lse: fwd.lse, count: fwd.count, gradLoss: 1.7, reduction });
        const loss = (y: Float64Array) => 1.7 * reference(y, t, n, v)[reduction];
        expectGradientMatches(floats(d), loss, x, { maxChecks: 120 });
      });
    });
  }

  it("normalises the mean gradient by the given count (e.g. a count over several micro-batches)", () => {
    scope(() => {
      const [n, v] = [3, 11];
      const logits = tensor("float32", [n, v], rng.normals(n * v));
      const targets = tensor("int32", [n], [1, 2, 3]);
      const fwd = crossEntropy({ logits, targets });
      const own = floats(crossEntropyBackward({ logits, targets, lse: fwd.lse, count: 3 }));
      const global = floats(crossEntropyBackward({ logits, targets, lse: fwd.lse, count: 12 }));
      expectClose(global, Array.from(own, (g) => g / 4), { rtol: 1e-6, atol: 1e-9 });
    });
  });

  it("leaks nothing", () => {
    const before = memoryStats();
    scope(() => {
      const logits = tensor("float32", [5, 50], rng.normals(250));
      const targets = tensor("int32", [5], [1, IGNORE, 3, 4, 49]);
      const r = crossEntropy({ logits, targets });
      crossEntropyBackward({ logits, targets, lse: r.lse, count: r.count });
    });
    expect(memoryStats().liveBytes).toBe(before.liveBytes);
    expect(memoryStats().liveBuffers).toBe(before.liveBuffers);
  });

  it("rejects invalid arguments", () => {
    scope(() => {
      const logits = tensor("float32", [2, 4]);
      const lse = tensor("float32", [2]);
      const targets = tensor("int32", [2], [0, 1]);
      expect(() => crossEntropy({ logits, targets: tensor("int32", [2], [0, 4]) })).toThrow(
        /'targets' must hold token ids in \[0, 4\) or the ignoreIndex -100, got 4 at \[1\]/,
      );
      expect(() => crossEntropy({ logits, targets: tensor("int32", [3]) })).toThrow(/'targets' must have shape \[N\]/);
      expect(() => crossEntropy({ logits, targets, reduction: "max" as "sum" })).toThrow(/'reduction' must be one of mean, sum/);
      expect(() => crossEntropy({ logits: tensor("float32", [2, 0]), targets })).toThrow(/at least one column/);
      expect(() => crossEntropyBackward({ logits, targets, lse, count: -1 })).toThrow(/'count' must be in \[0,/);
      expect(() => crossEntropyBackward({ logits, targets, lse } as unknown as Parameters<typeof crossEntropyBackward>[0])).toThrow(/'count'/);
      expect(() => crossEntropyBackward({ logits, targets, lse, count: 2, gradLoss: Number.NaN })).toThrow(/'gradLoss' must be finite/);
      expect(() => crossEntropyBackward({ logits, targets, lse: tensor("float32", [3]), count: 2 })).toThrow(/'lse' must have shape/);
    });
  });
});
