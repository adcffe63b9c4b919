import { clipGradNorm, floats, gradNorm, numThreads, scope, setNumThreads, tensor } from "../lib";
import type { Tensor } from "../lib";
import { expectClose } from "./helpers/assert";
import { Rng } from "./helpers/random";
import { expectNoLeak } from "./helpers/memory";

const t32 = (shape: number[], data?: ArrayLike<number>): Tensor => tensor("float32", shape, data);

/** Float64 sqrt(Σ x²) over several arrays. */
function refNorm(arrays: Float64Array[]): number {
  let s = 0;
  for (const a of arrays) for (const v of a) s += v * v;
  return Math.sqrt(s);
}

describe("gradNorm and clipGradNorm", () => {
  const rng = new Rng(61);

  it("are exact on hand-computed values: [3, 4] has norm 5", () => {
    scope(() => {
      expect(gradNorm({ tensors: [t32([2], [3, 4])] })).toBe(5);
      // Split over two tensors of other shapes: 1² + 2² + 2² + 4² = 25.
      expect(gradNorm({ tensors: [t32([1, 1], [1]), t32([3], [2, -2, 4])] })).toBe(5);
      expect(gradNorm({ tensors: [] })).toBe(0);
      // maxNorm 1: every element times 1 / (5 + 1e-6).
      const g = t32([2], [3, 4]);
      const { totalNorm, clipCoef } = clipGradNorm({ tensors: [g], maxNorm: 1 });
      expect(totalNorm).toBe(5);
      expect(clipCoef).toBeCloseTo(1 / (5 + 1e-6), 15);
      expect(Array.from(floats(g))).toEqual([Math.fround(3 * Math.fround(1 / (5 + 1e-6))), Math.fround(4 * Math.fround(1 / (5 + 1e-6)))]);
      // maxNorm above the norm: untouched, coefficient 1 (clamped, as clip_grad_norm_).
      const h = t32([2], [3, 4]);
      expect(clipGradNorm({ tensors: [h], maxNorm: 10 })).toEqual({ totalNorm: 5, clipCoef: 1 });
      expect(Array.from(floats(h))).toEqual([3, 4]);
    });
  });

  it("match a float64 reference over many tensors of odd shapes, and clipping scales all of them", () => {
    scope(() => {
      const shapes = [[1], [259], [3, 5], [7, 1, 3], [400, 333]];
      const data = shapes.map((s) => rng.normals(s.reduce((a, b) => a * b, 1), 0.01));
      const tensors = shapes.map((s, i) => t32(s, data[i]));
      const want = refNorm(data);
      expect(gradNorm({ tensors })).toBeCloseTo(want, 12);
      const maxNorm = want / 3;
      const { totalNorm, clipCoef } = clipGradNorm({ tensors, maxNorm });
      expect(totalNorm).toBeCloseTo(want, 12);
      expect(clipCoef).toBeCloseTo(maxNorm / (want + 1e-6), 12);
      tensors.forEach((t, i) => expectClose(floats(t), data[i].map((v) => v * clipCoef), { rtol: 1e-6, atol: 0 }));
      expect(gradNorm({ tensors })).toBeCloseTo(maxNorm, 5);
    });
  });

  it("accumulates in float64: no float32 overflow for huge gradients", () => {
    scope(() => {
      // (3·2¹⁰⁰)² and (4·2¹⁰⁰)² overflow float32 but not float64; the norm is exactly 5·2¹⁰⁰.
      expect(gradNorm({ tensors: [t32([2], [3 * 2 ** 100, 4 * 2 ** 100])] })).toBe(5 * 2 ** 100);
    });
  });

  it("do not depend on the thread count (fixed-order reduction)", () => {
    const threads = numThreads();
    try {
      scope(() => {
        const n = 4 * 65536 + 123; // 4 blocks of 2^16 elements and a ragged tail
        const tensors = [t32([n], rng.normals(n)), t32([5], rng.normals(5))];
        const norms = [1, 2, 3].map((t) => {
          setNumThreads(t);
          return gradNorm({ tensors });
        });
        expect(norms[1]).toBe(norms[0]);
        expect(norms[2]).toBe(norms[0]);
      });
    } finally {
      setNumThreads(threads);
    }
  });

  it("leave gradients untouched when the norm is not finite (clipCoef 1)", () => {
    scope(() => {
      const inf = t32([3], [1, Infinity, 2]);
      const other = t32([2], [3, 4]);
      const r = clipGradNorm({ tensors: [inf, other], maxNorm: 1 });
      expect(r).toEqual({ totalNorm: Infinity, clipCoef: 1 });
      expect(Array.from(floats(inf))).toEqual([1, Infinity, 2]);
      expect(Array.from(floats(other))).toEqual([3, 4]);
      const nan = t32([2], [NaN, 1]);
      const rn = clipGradNorm({ tensors: [nan], maxNorm: 1 });
      expect(rn.totalNorm).toBeNaN();
      expect(rn.clipCoef).toBe(1);
      expect(floats(nan)[1]).toBe(1);
    });
  });

  it("reject bad arguments and a tensor listed twice for clipping", () => {
    scope(() => {
      const g = t32([2], [3, 4]);
      expect(() => clipGradNorm({ tensors: [g], maxNorm: 0 })).toThrow(/clipGradNorm: 'maxNorm' must be > 0/);
      expect(() => clipGradNorm({ tensors: [g], maxNorm: -1 })).toThrow(/'maxNorm' must be in/);
      expect(() => clipGradNorm({ tensors: [g], maxNorm: Infinity })).toThrow(/'maxNorm' must be finite/);
      expect(() => clipGradNorm({ tensors: [g, g.reshape([1, 2])], maxNorm: 1 })).toThrow(
        /'tensors\[0\]' and 'tensors\[1\]' share memory/,
      );
      expect(() => gradNorm({ tensors: [tensor("int32", [2])] })).toThrow(/'tensors\[0\]' must be a float32 tensor/);
      expect(() => gradNorm({ tensors: [g.transpose(0, 0), 3 as unknown as Tensor] })).toThrow(/'tensors\[1\]' must be a tensor/);
      expect(Array.from(floats(g))).toEqual([3, 4]);
    });
  });

  it("leak no native memory", () => {
        expectNoLeak(() => {
      const n = 70_000; // two blocks: the partial sums use scratch memory
      const tensors = [t32([n], rng.normals(n)), t32([7], rng.normals(7))];
      gradNorm({ tensors });
      clipGradNorm({ tensors, maxNorm: 0.5 });
    });
  });
});
