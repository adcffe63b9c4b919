import { floats, nativeFunction, scope, siluMul, siluMulBackward, tensor } from "../lib";
import { expectClose } from "./helpers/assert";
import { expectGradientMatches, weightedSum } from "./helpers/gradcheck";
import { Rng } from "./helpers/random";
import { expectNoLeak } from "./helpers/memory";

/** Float64 silu(gate) · up, silu(g) = g / (1 + e^−g). */
function refSiluMul(gate: Float64Array, up: Float64Array): Float64Array {
  return gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]);
}

const shapes: Array<[string, number, number]> = [
  ["realistic", 64, 344],
  ["odd", 3, 259],
  ["dim 5", 7, 5],
  ["length one", 1, 1],
];

describe("siluMul", () => {
  const rng = new Rng(11);

  for (const [name, n, f] of shapes) {
    it(`matches a float64 reference: ${name} [${n}, ${f}]`, () => {
      scope(() => {
        const gate = rng.normals(n * f, 3);
        const up = rng.normals(n * f);
        const h = siluMul(tensor("float32", [n, f], gate), tensor("float32", [n, f], up));
        expect(h.shape).toEqual([n, f]);
        expectClose(floats(h), refSiluMul(gate, up), { rtol: 1e-5, atol: 1e-6 });
      });
    });
  }

  it("saturates without overflow for large |gate|", () => {
    scope(() => {
      const gate = Float64Array.from([-100, -30, -1e-3, 0, 1e-3, 30, 100]);
      const up = Float64Array.from([2, -3, 5, 7, -11, 13, -17]);
      const h = floats(siluMul(tensor("float32", [1, 7], gate), tensor("float32", [1, 7], up)));
      expect(h.every(Number.isFinite)).toBe(true);
      expectClose(h, refSiluMul(gate, up), { rtol: 1e-5, atol: 1e-6 });
    });
  });

  for (const [name, n, f] of [["odd", 3, 7], ["length one", 1, 1], ["dim 5", 4, 5]] as const) {
    it(`backward matches finite differences: ${name} [${n}, ${f}]`, () => {
      scope(() => {
        const gate = rng.normals(n * f, 2);
        const up = rng.normals(n * f);
        const w = rng.normals(n * f);
        const { dGate, dUp } = siluMulBackward(
          tensor("float32", [n, f], gate), tensor("float32", [n, f], up), tensor("float32", [n, f], w),
        );
        expectGradientMatches(floats(dGate), (g) => weightedSum(w, refSiluMul(g, up)), gate, { label: "dGate" });
        expectGradientMatches(floats(dUp), (u) => weightedSum(w, refSiluMul(gate, u)), up, { label: "dUp" });
      });
    });
  }

  it("backward is right at large |gate| (σ saturated)", () => {
    scope(() => {
      const gate = Float64Array.from([-40, -12, 12, 40]);
      const up = Float64Array.from([1.5, -2, 3, -0.5]);
      const w = Float64Array.from([0.7, -1.1, 0.3, 2]);
      const { dGate, dUp } = siluMulBackward(
        tensor("float32", [1, 4], gate), tensor("float32", [1, 4], up), tensor("float32", [1, 4], w),
      );
      // d/dg [g·σ(g)] = σ(g)·(1 + g·(1 − σ(g))), written out in float64.
      const sig = gate.map((g) => 1 / (1 + Math.exp(-g)));
      expectClose(floats(dGate), gate.map((g, i) => w[i] * up[i] * sig[i] * (1 + g * (1 - sig[i]))), { atol: 1e-6 });
      expectClose(floats(dUp), gate.map((g, i) => w[i] * g * sig[i]), { atol: 1e-6 });
    });
  });

  it("rejects mismatched shapes, wrong dtypes and unknown options", () => {
    scope(() => {
      const a = tensor("float32", [2, 3], [1, 2, 3, 4, 5, 6]);
      expect(() => siluMul(a, tensor("float32", [3, 2]))).toThrow(/siluMul: 'up' must have shape \[N, F\]/);
      expect(() => siluMul(a, tensor("int32", [2, 3]))).toThrow(/'up' must be a float32 tensor/);
      expect(() => siluMulBackward(a, a, tensor("float32", [2, 4]))).toThrow(/'dOut' must have shape/);
      const raw = nativeFunction<(args: object) => unknown>("siluMul");
      expect(() => raw({ gate: a, up: a, extra: 1 })).toThrow(/siluMul: unknown option 'extra'/);
    });
  });

  it("leaks no native memory", () => {
        expectNoLeak(() => {
      const g = tensor("float32", [16, 33], rng.normals(16 * 33));
      const u = tensor("float32", [16, 33], rng.normals(16 * 33));
      siluMulBackward(g, u, siluMul(g, u));
    });
  });
});
