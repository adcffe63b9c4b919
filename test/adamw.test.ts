import { adamw, floats, scope, tensor } from "../lib";
import type { Tensor } from "../lib";
import { expectClose } from "./helpers/assert";
import { Rng } from "./helpers/random";
import { expectNoLeak } from "./helpers/memory";

interface Hyper {
  lr: number; beta1: number; beta2: number; eps: number; weightDecay: number;
}

/** Float64 torch.optim.AdamW step t on one tensor (in place on p, m, v). */
function refAdamW(p: Float64Array, g: Float64Array, m: Float64Array, v: Float64Array, h: Hyper, t: number): void {
  const bc1 = 1 - h.beta1 ** t;
  const bc2 = 1 - h.beta2 ** t;
  for (let i = 0; i < p.length; ++i) {
    p[i] *= 1 - h.lr * h.weightDecay;
    m[i] = h.beta1 * m[i] + (1 - h.beta1) * g[i];
    v[i] = h.beta2 * v[i] + (1 - h.beta2) * g[i] * g[i];
    p[i] -= (h.lr / bc1) * (m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + h.eps));
  }
}

const t32 = (shape: number[], data?: ArrayLike<number>): Tensor => tensor("float32", shape, data);

describe("adamw", () => {
  const rng = new Rng(51);

  it("matches a hand-computed first step", () => {
    scope(() => {
      // lr 0.1, β1 0.9, β2 0.999, eps 1e-8, wd 0.01, t = 1; m = v = 0 before the step.
      //   decay: p ← p · (1 − 0.1·0.01) = 0.999 p
      //   m = 0.1 g, v = 0.001 g²; bias corrections 1 − 0.9 = 0.1 and 1 − 0.999 = 0.001, so
      //   m̂ = g, sqrt(v̂) = |g| and the update is lr · g / (|g| + 1e-8) = ±0.1 (to 2e-9·|g|⁻¹·0.1).
      //   p = 1,  g = 0.5:   0.999 − 0.1           = 0.899;  m = 0.05,   v = 0.00025
      //   p = −2, g = −0.25: −1.998 + 0.1          = −1.898; m = −0.025, v = 0.0000625
      //   p = 3,  g = 0:     2.997 (decay only, since m = 0); m = 0, v = 0
      const p = t32([3], [1, -2, 3]);
      const m = t32([3]);
      const v = t32([3]);
      adamw({ params: [p], grads: [t32([3], [0.5, -0.25, 0])], m: [m], v: [v], lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1 });
      expectClose(floats(p), [0.899, -1.898, 2.997], { rtol: 1e-6, atol: 0 }, "params");
      expectClose(floats(m), [0.05, -0.025, 0], { rtol: 1e-6, atol: 0 }, "m");
      expectClose(floats(v), [0.00025, 0.0000625, 0], { rtol: 1e-6, atol: 0 }, "v");
    });
  });

  it("matches a float64 reference of PyTorch's formula over several steps, many tensors", () => {
    scope(() => {
      const shapes = [[1], [259], [3, 5], [150, 151]]; // the last is large enough to be threaded
      const h: Hyper = { lr: 3e-3, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1 };
      const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);
      const ref = shapes.map((s) => ({ p: rng.normals(numel(s)), m: new Float64Array(numel(s)), v: new Float64Array(numel(s)) }));
      const params = shapes.map((s, i) => t32(s, ref[i].p));
      const m = shapes.map((s) => t32(s));
      const v = shapes.map((s) => t32(s));
      for (let step = 1; step <= 5; ++step) {
        const g = shapes.map((s) => rng.normals(numel(s), 0.5));
        g[1][7] = 0; // a zero gradient
        shapes.forEach((_, i) => refAdamW(ref[i].p, g[i], ref[i].m, ref[i].v, h, step));
        adamw({ params, grads: shapes.map((s, i) => t32(s, g[i])), m, v, ...h, step });
      }
      shapes.forEach((s, i) => {
        expectClose(floats(params[i]), ref[i].p, { rtol: 1e-5, atol: 1e-6 }, `params[${i}] ${s}`);
        expectClose(floats(m[i]), ref[i].m, { rtol: 1e-5, atol: 1e-7 }, `m[${i}]`);
        expectClose(floats(v[i]), ref[i].v, { rtol: 1e-5, atol: 1e-8 }, `v[${i}]`);
      });
    });
  });

  it("uses PyTorch's defaults (β 0.9/0.999, eps 1e-8, weight decay 0.01) and late-step bias corrections", () => {
    scope(() => {
      const p0 = rng.normals(64);
      const g = rng.normals(64);
      const m0 = rng.normals(64, 0.1);
      const v0 = rng.normals(64, 0.1).map(Math.abs);
      const ref = { p: Float64Array.from(p0), m: Float64Array.from(m0), v: Float64Array.from(v0) };
      refAdamW(ref.p, g, ref.m, ref.v, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 }, 1000);
      const p = t32([64], p0);
      const m = t32([64], m0);
      const v = t32([64], v0);
      adamw({ params: [p], grads: [t32([64], g)], m: [m], v: [v], lr: 1e-3, step: 1000 });
      expectClose(floats(p), ref.p, { rtol: 1e-5, atol: 1e-6 });
      expectClose(floats(v), ref.v, { rtol: 1e-5, atol: 1e-8 });
    });
  });

  it("accepts one gradient shared by two parameters (gradients are only read)", () => {
    scope(() => {
      const p = t32([2, 4], [1, 2, 3, 4, 5, 6, 7, 8]);
      const q = t32([2, 4], [8, 7, 6, 5, 4, 3, 2, 1]);
      const g = t32([2, 4], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]);
      adamw({ params: [p, q], grads: [g, g], m: [t32([2, 4]), t32([2, 4])], v: [t32([2, 4]), t32([2, 4])], lr: 0.01, weightDecay: 0, step: 1 });
      // First step without decay: p ← p − lr·g/|g| (to 1e-8 relative).
      expectClose(floats(p), [0.99, 1.99, 2.99, 3.99, 4.99, 5.99, 6.99, 7.99], { rtol: 1e-6 });
      expectClose(floats(q), [7.99, 6.99, 5.99, 4.99, 3.99, 2.99, 1.99, 0.99], { rtol: 1e-6 });
    });
  });

  it("rejects mismatched lists and shapes, aliasing and bad hyperparameters", () => {
    scope(() => {
      const p = t32([2, 3]);
      const ok = { params: [p], grads: [t32([2, 3])], m: [t32([2, 3])], v: [t32([2, 3])], lr: 0.1, step: 1 };
      expect(() => adamw({ ...ok, grads: [] })).toThrow(
        /adamw: 'params', 'grads', 'm' and 'v' must have the same length, got 1, 0, 1 and 1/,
      );
      expect(() => adamw({ ...ok, m: [t32([3, 2])] })).toThrow(/'m\[0\]' must have the shape of 'params\[0\]' \(float32 \[2, 3\]\)/);
      expect(() => adamw({ ...ok, v: [p] })).toThrow(/'params\[0\]' and 'v\[0\]' share memory|'v\[0\]' and 'params\[0\]' share memory/);
      expect(() => adamw({ ...ok, grads: [p.reshape([3, 2]).reshape([2, 3])] })).toThrow(/share memory/);
      const q = t32([2, 3]);
      expect(() => adamw({ params: [p, q], grads: [q, p], m: [t32([2, 3]), t32([2, 3])], v: [t32([2, 3]), t32([2, 3])], lr: 0.1, step: 1 })).toThrow(/share memory/);
      expect(() => adamw({ ...ok, beta1: 1 })).toThrow(/'beta1' must be in \[0, 1\)/);
      expect(() => adamw({ ...ok, beta2: -0.5 })).toThrow(/'beta2' must be in/);
      expect(() => adamw({ ...ok, lr: -1 })).toThrow(/'lr' must be in/);
      expect(() => adamw({ ...ok, lr: NaN })).toThrow(/'lr' must be finite/);
      expect(() => adamw({ ...ok, step: 0 })).toThrow(/'step' must be in \[1,/);
      expect(() => adamw({ ...ok, step: 1.5 })).toThrow(/'step' must be an integer/);
      expect(() => adamw({ ...ok, params: [tensor("int32", [2, 3])] })).toThrow(/'params\[0\]' must be a float32 tensor/);
    });
  });

  it("leaks no native memory", () => {
        expectNoLeak(() => {
      const n = 40000;
      adamw({ params: [t32([n], rng.normals(n))], grads: [t32([n], rng.normals(n))], m: [t32([n])], v: [t32([n])], lr: 1e-3, step: 1 });
    });
  });
});
