import {
  floats,
  rope,
  ropeBackward,
  ropeFrequencies,
  scope,
  tensor,
} from "../lib";
import { expectClose } from "./helpers/assert";
import { expectGradientMatches, weightedSum } from "./helpers/gradcheck";
import { Rng } from "./helpers/random";
import { expectNoLeak } from "./helpers/memory";

/**
 * transformers' default inverse frequencies, 1 / theta^(2j/D), in float64 except for the exponent
 * 2j/D, which transformers computes as a float32 tensor (`arange(0, D, 2).float() / D`): its rounding
 * moves theta^(2j/D) by up to ~1e-6 relative for theta = 500000, far more than float32's final rounding.
 */
function refDefaultFrequencies(headDim: number, theta: number): Float64Array {
  const out = new Float64Array(headDim / 2);
  for (let j = 0; j < headDim / 2; ++j) out[j] = 1 / Math.pow(theta, Math.fround((2 * j) / headDim));
  return out;
}

/**
 * transformers' _compute_llama3_parameters in float64: with L the original context length, a
 * frequency whose wavelength 2π/f exceeds L/low is divided by factor, one below L/high is kept, and
 * in between s = (L/λ − low)/(high − low) interpolates (1 − s)·f/factor + s·f.
 */
function refLlama3Frequencies(
  headDim: number, theta: number, factor: number, low: number, high: number, original: number,
): Float64Array {
  return refDefaultFrequencies(headDim, theta).map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < original / high) return f;
    if (wavelen > original / low) return f / factor;
    const s = (original / wavelen - low) / (high - low);
    return ((1 - s) * f) / factor + s * f;
  });
}

/**
 * RoPE in float64 on x [B, T, H, D]: θ = float32(pos · invFreq[j]) as HF's float32 matmul gives,
 * then (x1, x2) → (x1·c − x2·s, x2·c + x1·s) with c, s = cos θ, sin θ times `scaling`.
 */
function refRope(
  x: ArrayLike<number>, positions: ArrayLike<number>, invFreq: ArrayLike<number>,
  [B, T, H, D]: number[], scaling = 1,
): Float64Array {
  const half = D / 2;
  const out = new Float64Array(B * T * H * D);
  for (let bt = 0; bt < B * T; ++bt) {
    for (let j = 0; j < half; ++j) {
      const angle = Math.fround(positions[bt] * invFreq[j]);
      const c = Math.cos(angle) * scaling;
      const s = Math.sin(angle) * scaling;
      for (let h = 0; h < H; ++h) {
        const o = (bt * H + h) * D;
        out[o + j] = x[o + j] * c - x[o + j + half] * s;
        out[o + j + half] = x[o + j + half] * c + x[o + j] * s;
      }
    }
  }
  return out;
}

const f32 = (values: ArrayLike<number>) => Float64Array.from(values, (v) => Math.fround(v));

describe("ropeFrequencies", () => {
  it("is exact on hand-computed values", () => {
    scope(() => {
      // D = 4, theta = 10000: invFreq = [1 / 10000^(0/4), 1 / 10000^(2/4)] = [1, 1/100].
      expectClose(floats(ropeFrequencies({ headDim: 4, theta: 10000 })), [1, Math.fround(0.01)], { rtol: 0, atol: 0 });
      // D = 8, theta = 256: [1 / 256^0, 1 / 256^(1/4), 1 / 256^(1/2), 1 / 256^(3/4)] = [1, 1/4, 1/16, 1/64].
      expectClose(floats(ropeFrequencies({ headDim: 8, theta: 256 })), [1, 0.25, 0.0625, 0.015625], { rtol: 0, atol: 0 });
    });
  });

  it("matches float64 for Llama 2 and Llama 3 (default scaling)", () => {
    scope(() => {
      for (const [D, theta] of [[128, 10000], [128, 500000], [64, 10000], [2, 10000], [80, 1e6]]) {
        expectClose(floats(ropeFrequencies({ headDim: D, theta })), refDefaultFrequencies(D, theta), { rtol: 1.5e-7, atol: 0 });
      }
    });
  });

  it("matches an independent llama3 implementation with Llama 3.1's parameters", () => {
    scope(() => {
      const scaling = { type: "llama3" as const, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };
      const got = floats(ropeFrequencies({ headDim: 128, theta: 500000, scaling }));
      expectClose(got, refLlama3Frequencies(128, 500000, 8, 1, 4, 8192), { rtol: 1e-6, atol: 0 });
      // A second configuration (Llama 3.2's factor 32, another head dim) through the same formula.
      const other = { ...scaling, factor: 32, originalMaxPositionEmbeddings: 4096 };
      expectClose(
        floats(ropeFrequencies({ headDim: 64, theta: 500000, scaling: other })),
        refLlama3Frequencies(64, 500000, 32, 1, 4, 4096),
        { rtol: 1e-6, atol: 0 },
      );
    });
  });

  it("has llama3's defining properties", () => {
    scope(() => {
      const scaling = { type: "llama3" as const, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };
      const base = floats(ropeFrequencies({ headDim: 128, theta: 500000 }));
      const scaled = floats(ropeFrequencies({ headDim: 128, theta: 500000, scaling }));
      const counts = { kept: 0, divided: 0, between: 0 };
      for (let j = 0; j < 64; ++j) {
        const wavelen = (2 * Math.PI) / base[j];
        if (wavelen < 8192 / 4) {
          // High frequencies (short wavelengths) are untouched.
          expect(scaled[j]).toBe(base[j]);
          counts.kept++;
        } else if (wavelen > 8192 / 1) {
          // Low frequencies are divided by the factor (exact in binary floating point).
          expect(scaled[j]).toBe(base[j] / 8);
          counts.divided++;
        } else {
          // In between: strictly between the two.
          expect(scaled[j]).toBeGreaterThan(base[j] / 8);
          expect(scaled[j]).toBeLessThan(base[j]);
          counts.between++;
        }
        if (j > 0) expect(scaled[j]).toBeLessThan(scaled[j - 1]);
      }
      expect(counts.kept).toBeGreaterThan(0);
      expect(counts.divided).toBeGreaterThan(0);
      expect(counts.between).toBeGreaterThan(0);
      expect(counts.kept + counts.divided + counts.between).toBe(64);
    });
  });

  it("rejects invalid options", () => {
    const llama3 = { type: "llama3" as const, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };
    expect(() => ropeFrequencies({ headDim: 5, theta: 10000 })).toThrow(/headDim' must be even/);
    expect(() => ropeFrequencies({ headDim: 0, theta: 10000 })).toThrow(/headDim/);
    expect(() => ropeFrequencies({ headDim: 8, theta: 0 })).toThrow(/theta' must be > 0/);
    expect(() => ropeFrequencies({ headDim: 8, theta: -1 })).toThrow(/theta/);
    expect(() => ropeFrequencies({ headDim: 8, theta: NaN })).toThrow(/theta' must be finite/);
    expect(() => ropeFrequencies({ headDim: 8, theta: 1e4, scaling: { ...llama3, factor: 0.5 } })).toThrow(/factor/);
    expect(() => ropeFrequencies({ headDim: 8, theta: 1e4, scaling: { ...llama3, lowFreqFactor: 0 } })).toThrow(/lowFreqFactor/);
    expect(() => ropeFrequencies({ headDim: 8, theta: 1e4, scaling: { ...llama3, highFreqFactor: 1 } })).toThrow(/highFreqFactor/);
    expect(() => ropeFrequencies({ headDim: 8, theta: 1e4, scaling: { ...llama3, originalMaxPositionEmbeddings: 0.5 } })).toThrow(
      /originalMaxPositionEmbeddings/,
    );
    const misspelt = { ...llama3, low_freq_factor: 1 } as unknown as typeof llama3;
    expect(() => ropeFrequencies({ headDim: 8, theta: 1e4, scaling: misspelt })).toThrow(/unknown option 'low_freq_factor'/);
    const wrongType = { ...llama3, type: "yarn" } as unknown as typeof llama3;
    expect(() => ropeFrequencies({ headDim: 8, theta: 1e4, scaling: wrongType })).toThrow(/scaling' must be one of default, llama3/);
  });
});

describe("rope", () => {
  const rng = new Rng(7);

  it("is exact on hand-computed values", () => {
    scope(() => {
      // One head of D = 4, invFreq = [π/2, π]; pairs are (x[0], x[2]) and (x[1], x[3]).
      //   t = 0, position 0: θ = [0, 0], identity:            [5, 6, 7, 8] → [5, 6, 7, 8]
      //   t = 1, position 1: θ = [π/2, π], (c, s) = (0, 1) and (−1, 0):
      //     y0 = 0·1 − 1·3 = −3, y2 = 0·3 + 1·1 = 1, y1 = −1·2 − 0·4 = −2, y3 = −1·4 + 0·2 = −4
      //   t = 2, position 2: θ = [π, 2π], (c, s) = (−1, 0) and (1, 0): [1, 2, 3, 4] → [−1, 2, −3, 4]
      // all times attentionScaling = 2. (cos(float32 π/2) ≈ −4e-8, hence the small atol.)
      const x = tensor("float32", [1, 3, 1, 4], [5, 6, 7, 8, 1, 2, 3, 4, 1, 2, 3, 4]);
      const positions = tensor("int32", [1, 3], [0, 1, 2]);
      const invFreq = tensor("float32", [2], [Math.PI / 2, Math.PI]);
      const out = rope({ x, positions, invFreq, attentionScaling: 2 });
      expectClose(floats(out), [10, 12, 14, 16, -6, -4, 2, -8, -2, 4, -6, 8], { rtol: 0, atol: 2e-6 });
      // The backward is the inverse rotation: rotating back gives x (times scaling² = 4).
      const back = ropeBackward({ dOut: out, positions, invFreq, attentionScaling: 2 });
      expectClose(floats(back), floats(x).map((v) => 4 * v), { rtol: 0, atol: 4e-6 });
    });
  });

  const shapes: Array<[string, number[]]> = [
    ["D = 2, H = 3, T = 1", [2, 1, 3, 2]],
    ["odd sizes", [3, 5, 3, 6]],
    ["Llama-like", [2, 64, 8, 64]],
    ["Llama 3 head dim", [1, 33, 4, 128]],
  ];
  for (const [name, shape] of shapes) {
    it(`matches a float64 reference: ${name} [${shape.join(", ")}]`, () => {
      scope(() => {
        const [B, T, H, D] = shape;
        const x = rng.normals(B * T * H * D);
        // Llama 3.1 frequencies from the independent reference, rounded to float32.
        const invFreq = f32(refLlama3Frequencies(D, 500000, 8, 1, 4, 8192));
        const positions = rng.ints(B * T, 0, 20000);
        const out = rope({
          x: tensor("float32", shape, x),
          positions: tensor("int32", [B, T], positions),
          invFreq: tensor("float32", [D / 2], invFreq),
        });
        expect(out.shape).toEqual(shape);
        expectClose(floats(out), refRope(x, positions, invFreq, shape), { rtol: 1e-5, atol: 1e-5 });
      });
    });
  }

  it("takes arbitrary position offsets (left padding, KV cache) and attentionScaling", () => {
    scope(() => {
      const shape = [3, 6, 2, 8];
      const [B, T, H, D] = shape;
      // Row 0 left-padded (pads repeat position 0), row 1 continues a KV cache at 1000, row 2 far out.
      const positions = [0, 0, 0, 1, 2, 3, 1000, 1001, 1002, 1003, 1004, 1005, 123456, 7, 0, 65535, 3, 3];
      const x = rng.normals(B * T * H * D);
      const invFreq = f32(refDefaultFrequencies(D, 10000));
      const out = rope({
        x: tensor("float32", shape, x),
        positions: tensor("int32", [B, T], positions),
        invFreq: tensor("float32", [D / 2], invFreq),
        attentionScaling: 1.25,
      });
      expectClose(floats(out), refRope(x, positions, invFreq, shape, 1.25), { rtol: 1e-5, atol: 1e-5 });
    });
  });

  it("makes q·k depend only on the distance between positions", () => {
    scope(() => {
      // ⟨R(m)q, R(n)k⟩ = ⟨q, R(n − m)k⟩: shifting both positions by the same offset keeps every dot.
      const D = 16;
      const q = rng.normals(D);
      const k = rng.normals(D);
      const invFreq = ropeFrequencies({ headDim: D, theta: 10000 });
      const dot = (m: number, n: number) => {
        const rq = floats(rope({ x: tensor("float32", [1, 1, 1, D], q), positions: tensor("int32", [1, 1], [m]), invFreq }));
        const rk = floats(rope({ x: tensor("float32", [1, 1, 1, D], k), positions: tensor("int32", [1, 1], [n]), invFreq }));
        return weightedSum(rq, rk);
      };
      const base = dot(3, 10);
      for (const shift of [1, 17, 250]) expect(Math.abs(dot(3 + shift, 10 + shift) - base)).toBeLessThan(1e-4);
      expect(Math.abs(dot(3, 11) - base)).toBeGreaterThan(1e-3);
    });
  });

  it("in place equals out of place, forward and backward", () => {
    scope(() => {
      const shape = [2, 9, 3, 10];
      const n = shape.reduce((a, b) => a * b);
      const x = rng.normals(n);
      const positions = tensor("int32", [2, 9], rng.ints(18, 0, 500));
      const invFreq = ropeFrequencies({ headDim: 10, theta: 10000 });
      const outOfPlace = floats(rope({ x: tensor("float32", shape, x), positions, invFreq }));
      const target = tensor("float32", shape, x);
      const inPlace = rope({ x: target, positions, invFreq, inPlace: true });
      expect(inPlace).toBe(target);
      expect(Array.from(floats(target))).toEqual(Array.from(outOfPlace));
      const dOutOfPlace = floats(ropeBackward({ dOut: tensor("float32", shape, x), positions, invFreq }));
      const dTarget = tensor("float32", shape, x);
      expect(ropeBackward({ dOut: dTarget, positions, invFreq, inPlace: true })).toBe(dTarget);
      expect(Array.from(floats(dTarget))).toEqual(Array.from(dOutOfPlace));
    });
  });

  for (const [name, shape, scaling] of [
    ["B = 2, T = 3, H = 2, D = 6", [2, 3, 2, 6], 1],
    ["D = 2, T = 1, scaled", [1, 1, 3, 2], 0.75],
  ] as const) {
    it(`backward matches finite differences: ${name}`, () => {
      scope(() => {
        const [B, T, H, D] = shape;
        const x = rng.normals(B * T * H * D);
        const w = rng.normals(B * T * H * D);
        const positions = rng.ints(B * T, 0, 3000);
        const invFreq = f32(refDefaultFrequencies(D, 10000));
        const dX = ropeBackward({
          dOut: tensor("float32", [...shape], w),
          positions: tensor("int32", [B, T], positions),
          invFreq: tensor("float32", [D / 2], invFreq),
          attentionScaling: scaling,
        });
        expectGradientMatches(floats(dX), (xs) => weightedSum(w, refRope(xs, positions, invFreq, [...shape], scaling)), x, {
          label: "dX",
        });
      });
    });
  }

  it("rejects invalid inputs", () => {
    scope(() => {
      const x = tensor("float32", [1, 2, 1, 4]);
      const positions = tensor("int32", [1, 2], [0, 1]);
      const invFreq = tensor("float32", [2], [1, 0.01]);
      expect(() => rope({ x: tensor("float32", [1, 2, 1, 3]), positions, invFreq })).toThrow(/head dim D of 'x' must be even/);
      expect(() => rope({ x, positions, invFreq: tensor("float32", [3]) })).toThrow(/'invFreq' must have D\/2 = 2 elements/);
      expect(() => rope({ x, positions: tensor("int32", [1, 2], [0, -1]), invFreq })).toThrow(/'positions' must be ≥ 0, got -1 at \[0, 1\]/);
      expect(() => rope({ x, positions: tensor("int32", [1, 3]), invFreq })).toThrow(/'positions' must have shape \[B, T\]/);
      expect(() => rope({ x, positions: tensor("float32", [1, 2]), invFreq })).toThrow(/'positions' must be a int32 tensor/);
      expect(() => rope({ x, positions, invFreq: tensor("float32", [2], [1, NaN]) })).toThrow(/'invFreq' must be finite/);
      expect(() => rope({ x, positions, invFreq, attentionScaling: 0 })).toThrow(/attentionScaling' must be > 0/);
      expect(() => rope({ x, positions, invFreq, attentionScaling: Infinity })).toThrow(/attentionScaling' must be finite/);
      const extra = { x, positions, invFreq, position_ids: positions } as unknown as Parameters<typeof rope>[0];
      expect(() => rope(extra)).toThrow(/unknown option 'position_ids'/);
      expect(() => ropeBackward({ dOut: x, positions: tensor("int32", [2, 2]), invFreq })).toThrow(/positions/);
    });
  });

  it("leaks no native memory", () => {
        expectNoLeak(() => {
      const x = tensor("float32", [2, 16, 4, 32], rng.normals(2 * 16 * 4 * 32));
      const positions = tensor("int32", [2, 16], rng.ints(32, 0, 100));
      const invFreq = ropeFrequencies({ headDim: 32, theta: 500000 });
      const out = rope({ x, positions, invFreq });
      ropeBackward({ dOut: out, positions, invFreq });
      rope({ x, positions, invFreq, inPlace: true });
    });
  });
});
