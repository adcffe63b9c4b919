import {
  attention,
  attentionBackward,
  attentionNaive,
  floats,
  memoryStats,
  numThreads,
  resetPeakBytes,
  scope,
  setNumThreads,
  tensor,
  Tensor,
} from "../lib";
import { expectClose } from "./helpers/assert";
import { expectGradientMatches, weightedSum } from "./helpers/gradcheck";
import { Rng } from "./helpers/random";
import { expectNoLeak } from "./helpers/memory";

interface Shape {
  B: number;
  T: number;
  S: number;
  Hq: number;
  Hkv: number;
  D: number;
}

interface RefOptions {
  /** [B, S] of 0/1, or undefined for every key. */
  mask?: ArrayLike<number>;
  scale?: number;
  causal?: boolean;
}

/**
 * Attention in float64, row by row: query t of head h (kv head h / (Hq/Hkv)) sits at key position
 * S − T + t and sees keys j ≤ that position (when causal) whose mask is 1; out = softmax(scale·q·kⱼ)·V
 * over those keys, lse = logsumexp; a row that sees nothing gets zeros and lse = −inf.
 */
function refAttention(
  q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, s: Shape, o: RefOptions = {},
): { out: Float64Array; lse: Float64Array } {
  const { B, T, S, Hq, Hkv, D } = s;
  const scale = o.scale ?? 1 / Math.sqrt(D);
  const causal = o.causal ?? true;
  const out = new Float64Array(B * T * Hq * D);
  const lse = new Float64Array(B * Hq * T);
  const scores = new Float64Array(S);
  for (let b = 0; b < B; ++b) {
    for (let h = 0; h < Hq; ++h) {
      const g = Math.floor(h / (Hq / Hkv));
      for (let t = 0; t < T; ++t) {
        const qo = ((b * T + t) * Hq + h) * D;
        let max = -Infinity;
        for (let j = 0; j < S; ++j) {
          const visible = (!causal || j <= S - T + t) && (!o.mask || o.mask[b * S + j] === 1);
          let dot = 0;
          const ko = ((b * S + j) * Hkv + g) * D;
          for (let d = 0; d < D; ++d) dot += q[qo + d] * k[ko + d];
          scores[j] = visible ? scale * dot : -Infinity;
          max = Math.max(max, scores[j]);
        }
        if (max === -Infinity) {
          lse[(b * Hq + h) * T + t] = -Infinity;
          continue;
        }
        let sum = 0;
        for (let j = 0; j < S; ++j) sum += Math.exp(scores[j] - max);
        for (let j = 0; j < S; ++j) {
          const p = Math.exp(scores[j] - max) / sum;
          const vo = ((b * S + j) * Hkv + g) * D;
          for (let d = 0; d < D; ++d) out[qo + d] += p * v[vo + d];
        }
        lse[(b * Hq + h) * T + t] = max + Math.log(sum);
      }
    }
  }
  return { out, lse };
}

/**
 * The gradients of Σ dOut·out in float64 from the softmax calculus, row by row: with p the row's
 * probabilities, dpⱼ = dOut·vⱼ and Di = Σ pⱼ·dpⱼ, dsⱼ = pⱼ·(dpⱼ − Di); dq = scale·Σ dsⱼ·kⱼ,
 * dkⱼ += scale·dsⱼ·q, dvⱼ += pⱼ·dOut. Used where finite differences would be too slow.
 */
function refAttentionBackward(
  q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, dOut: ArrayLike<number>, s: Shape,
  o: RefOptions = {},
): { dQ: Float64Array; dK: Float64Array; dV: Float64Array } {
  const { B, T, S, Hq, Hkv, D } = s;
  const scale = o.scale ?? 1 / Math.sqrt(D);
  const causal = o.causal ?? true;
  const dQ = new Float64Array(B * T * Hq * D);
  const dK = new Float64Array(B * S * Hkv * D);
  const dV = new Float64Array(B * S * Hkv * D);
  const { lse } = refAttention(q, k, v, s, o);
  const dot = (a: ArrayLike<number>, ao: number, b: ArrayLike<number>, bo: number) => {
    let sum = 0;
    for (let d = 0; d < D; ++d) sum += a[ao + d] * b[bo + d];
    return sum;
  };
  for (let b = 0; b < B; ++b) {
    for (let h = 0; h < Hq; ++h) {
      const g = Math.floor(h / (Hq / Hkv));
      for (let t = 0; t < T; ++t) {
        const l = lse[(b * Hq + h) * T + t];
        if (l === -Infinity) continue;
        const qo = ((b * T + t) * Hq + h) * D;
        const visible = (j: number) => (!causal || j <= S - T + t) && (!o.mask || o.mask[b * S + j] === 1);
        const p = new Float64Array(S);
        const dp = new Float64Array(S);
        let di = 0;
        for (let j = 0; j < S; ++j) {
          if (!visible(j)) continue;
          const ko = ((b * S + j) * Hkv + g) * D;
          p[j] = Math.exp(scale * dot(q, qo, k, ko) - l);
          dp[j] = dot(dOut, qo, v, ko);
          di += p[j] * dp[j];
        }
        for (let j = 0; j < S; ++j) {
          if (!visible(j)) continue;
          const ko = ((b * S + j) * Hkv + g) * D;
          const ds = p[j] * (dp[j] - di);
          for (let d = 0; d < D; ++d) {
            dQ[qo + d] += scale * ds * k[ko + d];
            dK[ko + d] += scale * ds * q[qo + d];
            dV[ko + d] += p[j] * dOut[qo + d];
          }
        }
      }
    }
  }
  return { dQ, dK, dV };
}

interface Case {
  shape: Shape;
  q: Float64Array;
  k: Float64Array;
  v: Float64Array;
  Q: Tensor;
  K: Tensor;
  V: Tensor;
}

function randomCase(rng: Rng, shape: Shape): Case {
  const { B, T, S, Hq, Hkv, D } = shape;
  const q = rng.normals(B * T * Hq * D);
  const k = rng.normals(B * S * Hkv * D);
  const v = rng.normals(B * S * Hkv * D);
  return {
    shape, q, k, v,
    Q: tensor("float32", [B, T, Hq, D], q),
    K: tensor("float32", [B, S, Hkv, D], k),
    V: tensor("float32", [B, S, Hkv, D], v),
  };
}

/** Runs the native forward and compares out and lse with the float64 reference. */
function checkForward(c: Case, o: RefOptions & { keyMask?: Tensor }): { out: Tensor; lse: Tensor } {
  const { B, T, Hq, D } = c.shape;
  const result = attention({ q: c.Q, k: c.K, v: c.V, keyMask: o.keyMask, scale: o.scale, causal: o.causal });
  expect(result.out.shape).toEqual([B, T, Hq, D]);
  expect(result.lse.shape).toEqual([B, Hq, T]);
  const ref = refAttention(c.q, c.k, c.v, c.shape, o);
  expectClose(floats(result.out), ref.out, { rtol: 1e-4, atol: 2e-5 }, "out");
  expectClose(floats(result.lse), ref.lse, { rtol: 1e-5, atol: 1e-5 }, "lse");
  return result;
}

/** The native backward against central differences of Σ w·out(q, k, v) in float64. */
function checkBackward(rng: Rng, c: Case, o: RefOptions & { keyMask?: Tensor }, maxChecks = 48): void {
  const { out, lse } = attention({ q: c.Q, k: c.K, v: c.V, keyMask: o.keyMask, scale: o.scale, causal: o.causal });
  const w = rng.normals(out.numel);
  const { B, T, Hq, D } = c.shape;
  const grads = attentionBackward({
    q: c.Q, k: c.K, v: c.V, keyMask: o.keyMask, scale: o.scale, causal: o.causal,
    out, lse, dOut: tensor("float32", [B, T, Hq, D], w),
  });
  const loss = (q: Float64Array, k: Float64Array, v: Float64Array) => weightedSum(w, refAttention(q, k, v, c.shape, o).out);
  expectGradientMatches(floats(grads.dQ), (x) => loss(x, c.k, c.v), c.q, { label: "dQ", maxChecks });
  expectGradientMatches(floats(grads.dK), (x) => loss(c.q, x, c.v), c.k, { label: "dK", maxChecks });
  expectGradientMatches(floats(grads.dV), (x) => loss(c.q, c.k, x), c.v, { label: "dV", maxChecks });
}

const allFinite = (t: Tensor) => floats(t).every((x) => Number.isFinite(x));

describe("attention", () => {
  const rng = new Rng(11);

  const forwardCases: Array<[string, Shape, RefOptions]> = [
    ["3 query heads on 1 kv head, odd sizes", { B: 2, T: 7, S: 7, Hq: 3, Hkv: 1, D: 5 }, {}],
    ["Llama-like GQA", { B: 2, T: 64, S: 64, Hq: 8, Hkv: 2, D: 32 }, {}],
    ["several query and key blocks", { B: 1, T: 150, S: 150, Hq: 4, Hkv: 2, D: 16 }, {}],
    ["KV cache: T < S", { B: 2, T: 3, S: 10, Hq: 4, Hkv: 2, D: 8 }, {}],
    ["decode: T = 1", { B: 3, T: 1, S: 9, Hq: 4, Hkv: 2, D: 8 }, {}],
    ["long cache, blocks of queries", { B: 1, T: 70, S: 200, Hq: 2, Hkv: 1, D: 8 }, {}],
    ["non-causal, T < S", { B: 2, T: 5, S: 8, Hq: 2, Hkv: 2, D: 4 }, { causal: false }],
    ["non-causal, T > S", { B: 1, T: 6, S: 4, Hq: 3, Hkv: 3, D: 3 }, { causal: false }],
    ["custom scale, D = 1", { B: 1, T: 4, S: 4, Hq: 2, Hkv: 1, D: 1 }, { scale: 0.7 }],
  ];
  for (const [name, shape, options] of forwardCases) {
    it(`matches a float64 reference: ${name}`, () => {
      scope(() => checkForward(randomCase(rng, shape), options));
    });
  }

  it("masks left padding; rows that see no key output zeros and lse = −inf, with finite gradients", () => {
    scope(() => {
      const shape = { B: 2, T: 7, S: 7, Hq: 3, Hkv: 1, D: 5 };
      const c = randomCase(rng, shape);
      // Row 0 is left-padded by 2: its queries 0 and 1 see no key at all. Row 1 masks a middle key.
      const mask = [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1];
      const keyMask = tensor("int32", [2, 7], mask);
      const { out, lse } = checkForward(c, { mask, keyMask });
      const o = floats(out);
      const l = floats(lse);
      for (let h = 0; h < 3; ++h) {
        for (const t of [0, 1]) {
          expect(l[h * 7 + t]).toBe(-Infinity);
          expect(Array.from(o.subarray((t * 3 + h) * 5, (t * 3 + h + 1) * 5))).toEqual([0, 0, 0, 0, 0]);
        }
      }
      const grads = attentionBackward({
        q: c.Q, k: c.K, v: c.V, keyMask, out, lse, dOut: tensor("float32", [2, 7, 3, 5], rng.normals(2 * 7 * 3 * 5)),
      });
      expect(allFinite(grads.dQ) && allFinite(grads.dK) && allFinite(grads.dV)).toBe(true);
      // The padded queries get no gradient; masked keys get none either.
      const dQ = floats(grads.dQ);
      for (let i = 0; i < 2 * 3 * 5; ++i) expect(dQ[i]).toBe(0);
      const dK = floats(grads.dK);
      const dV = floats(grads.dV);
      for (const j of [0, 1, 7 + 3]) {
        for (let d = 0; d < 5; ++d) {
          expect(dK[j * 5 + d]).toBe(0);
          expect(dV[j * 5 + d]).toBe(0);
        }
      }
      checkBackward(rng, c, { mask, keyMask });
    });
  });

  it("a fully masked batch row gives zeros, lse = −inf and zero gradients", () => {
    scope(() => {
      const c = randomCase(rng, { B: 2, T: 4, S: 6, Hq: 2, Hkv: 1, D: 3 });
      const mask = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1];
      const keyMask = tensor("int32", [2, 6], mask);
      const { out, lse } = checkForward(c, { mask, keyMask });
      expect(Array.from(floats(lse).subarray(0, 8))).toEqual(new Array(8).fill(-Infinity));
      const grads = attentionBackward({
        q: c.Q, k: c.K, v: c.V, keyMask, out, lse, dOut: tensor("float32", [2, 4, 2, 3], rng.normals(48)),
      });
      for (const [g, n] of [[grads.dQ, 24], [grads.dK, 18], [grads.dV, 18]] as const) {
        expect(allFinite(g)).toBe(true);
        expect(Array.from(floats(g).subarray(0, n)).every((x) => x === 0)).toBe(true);
        expect(Array.from(floats(g).subarray(n)).some((x) => x !== 0)).toBe(true);
      }
    });
  });

  const backwardCases: Array<[string, Shape, RefOptions]> = [
    ["3 query heads on 1 kv head", { B: 2, T: 7, S: 7, Hq: 3, Hkv: 1, D: 5 }, {}],
    ["KV cache: T < S, GQA", { B: 1, T: 3, S: 8, Hq: 4, Hkv: 2, D: 4 }, {}],
    ["decode: T = 1", { B: 2, T: 1, S: 6, Hq: 2, Hkv: 1, D: 4 }, {}],
    ["non-causal, scaled", { B: 1, T: 5, S: 3, Hq: 2, Hkv: 1, D: 4 }, { causal: false, scale: 0.3 }],
    ["two query and key blocks", { B: 1, T: 67, S: 67, Hq: 1, Hkv: 1, D: 2 }, {}],
  ];
  for (const [name, shape, options] of backwardCases) {
    it(`backward matches finite differences: ${name}`, () => {
      scope(() => checkBackward(rng, randomCase(rng, shape), options));
    });
  }

  // Shapes too large for finite differences: every gradient element against the float64 calculus.
  const largeBackwardCases: Array<[string, Shape, RefOptions & { padding?: number }]> = [
    ["Llama-like GQA", { B: 2, T: 64, S: 64, Hq: 8, Hkv: 2, D: 32 }, {}],
    ["several query and key blocks, left padding", { B: 2, T: 150, S: 150, Hq: 4, Hkv: 2, D: 16 }, { padding: 9 }],
    ["more queries than one dK/dV step, KV cache", { B: 1, T: 300, S: 330, Hq: 2, Hkv: 1, D: 8 }, {}],
    ["non-causal, several blocks", { B: 1, T: 100, S: 140, Hq: 2, Hkv: 2, D: 8 }, { causal: false }],
  ];
  for (const [name, shape, options] of largeBackwardCases) {
    it(`backward matches the float64 gradient: ${name}`, () => {
      scope(() => {
        const c = randomCase(rng, shape);
        const { B, T, S, Hq, D } = shape;
        const mask = options.padding
          ? Array.from({ length: B * S }, (_, i) => (i < S && i < options.padding! ? 0 : 1))
          : undefined;
        const keyMask = mask ? tensor("int32", [B, S], mask) : undefined;
        const o = { ...options, mask, keyMask };
        const { out, lse } = checkForward(c, o);
        const w = rng.normals(B * T * Hq * D);
        const grads = attentionBackward({ q: c.Q, k: c.K, v: c.V, keyMask, causal: o.causal, out, lse, dOut: tensor("float32", [B, T, Hq, D], w) });
        const ref = refAttentionBackward(c.q, c.k, c.v, w, shape, o);
        expectClose(floats(grads.dQ), ref.dQ, { rtol: 1e-3, atol: 1e-4 }, "dQ");
        expectClose(floats(grads.dK), ref.dK, { rtol: 1e-3, atol: 1e-4 }, "dK");
        expectClose(floats(grads.dV), ref.dV, { rtol: 1e-3, atol: 1e-4 }, "dV");
      });
    });
  }

  it("gives bitwise identical results for 1, 2 and 3 threads", () => {
    const saved = numThreads();
    try {
      scope(() => {
        const shape = { B: 1, T: 200, S: 200, Hq: 4, Hkv: 1, D: 16 };
        const c = randomCase(rng, shape);
        const keyMask = tensor("int32", [1, 200], Array.from({ length: 200 }, (_, j) => (j < 5 ? 0 : 1)));
        const dOut = tensor("float32", [1, 200, 4, 16], rng.normals(200 * 4 * 16));
        const run = (threads: number) => {
          setNumThreads(threads);
          const { out, lse } = attention({ q: c.Q, k: c.K, v: c.V, keyMask });
          const g = attentionBackward({ q: c.Q, k: c.K, v: c.V, keyMask, out, lse, dOut });
          return [out, lse, g.dQ, g.dK, g.dV].map((t) => Array.from(floats(t)));
        };
        const one = run(1);
        expect(run(2)).toEqual(one);
        expect(run(3)).toEqual(one);
      });
    } finally {
      setNumThreads(saved);
    }
  });

  it("the naive benchmark baseline computes the same thing", () => {
    scope(() => {
      const c = randomCase(rng, { B: 2, T: 5, S: 9, Hq: 4, Hkv: 2, D: 6 });
      const mask = [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1];
      const naive = attentionNaive({ q: c.Q, k: c.K, v: c.V, keyMask: tensor("int32", [2, 9], mask) });
      const ref = refAttention(c.q, c.k, c.v, c.shape, { mask });
      expectClose(floats(naive.out), ref.out, { rtol: 1e-4, atol: 2e-5 });
      expectClose(floats(naive.lse), ref.lse, { rtol: 1e-5, atol: 1e-5 });
    });
  });

  it("rejects invalid inputs", () => {
    scope(() => {
      const q = tensor("float32", [2, 4, 6, 8]);
      const k = tensor("float32", [2, 5, 2, 8]);
      const v = tensor("float32", [2, 5, 2, 8]);
      expect(() => attention({ q, k: tensor("float32", [2, 5, 4, 8]), v: tensor("float32", [2, 5, 4, 8]) })).toThrow(
        /query heads \(Hq = 6 from 'q'\) must be a multiple of the kv heads \(Hkv = 4 from 'k'\)/,
      );
      expect(() => attention({ q, k, v: tensor("float32", [2, 5, 2, 7]) })).toThrow(/'v' must have shape \[B, S, Hkv, D\]/);
      expect(() => attention({ q, k: tensor("float32", [3, 5, 2, 8]), v })).toThrow(/'k' must have shape/);
      expect(() => attention({ q: tensor("float32", [2, 6, 6, 8]), k, v })).toThrow(/causal attention needs T ≤ S/);
      expect(() => attention({ q: tensor("float32", [2, 6, 6, 8]), k, v, causal: false })).not.toThrow();
      expect(() => attention({ q, k, v, keyMask: tensor("int32", [2, 5], [1, 1, 2, 1, 1, 1, 1, 1, 1, 1]) })).toThrow(
        /'keyMask' must hold 0 \(masked\) or 1 \(attend\), got 2 at \[0, 2\]/,
      );
      expect(() => attention({ q, k, v, keyMask: tensor("float32", [2, 5]) })).toThrow(/'keyMask' must be a int32 tensor/);
      expect(() => attention({ q, k, v, keyMask: tensor("int32", [2, 4]) })).toThrow(/'keyMask' must have shape \[B, S\]/);
      expect(() => attention({ q, k, v, scale: 0 })).toThrow(/'scale' must be > 0/);
      expect(() => attention({ q, k, v, scale: -1 })).toThrow(/'scale'/);
      expect(() => attention({ q, k, v, scale: NaN })).toThrow(/'scale' must be finite/);
      expect(() => attention({ q: tensor("int32", [2, 4, 6, 8]), k, v })).toThrow(/'q' must be a float32 tensor/);
      expect(() => attention({ q: q.transpose(1, 2), k, v })).toThrow(/'q' must be contiguous/);
      const extra = { q, k, v, mask: k } as unknown as Parameters<typeof attention>[0];
      expect(() => attention(extra)).toThrow(/unknown option 'mask'/);
      const { out, lse } = attention({ q, k, v });
      expect(() => attentionBackward({ q, k, v, out, lse: tensor("float32", [2, 4, 6]), dOut: out })).toThrow(
        /'lse' must have shape \[B, Hq, T\]/,
      );
      expect(() => attentionBackward({ q, k, v, out, lse, dOut: tensor("float32", [2, 4, 6, 7]) })).toThrow(/'dOut' must have shape/);
    });
  });

  it("never holds a whole [T, S] score matrix: scratch is bounded by the blocks", () => {
    const saved = numThreads();
    try {
      setNumThreads(2);
      scope(() => {
        const [T, Hq, D] = [1024, 2, 8];
        const c = randomCase(rng, { B: 1, T, S: T, Hq, Hkv: 1, D });
        const before = memoryStats().liveBytes;
        resetPeakBytes();
        const { out, lse } = attention({ q: c.Q, k: c.K, v: c.V });
        const forwardPeak = memoryStats().peakBytes - before;
        const g = attentionBackward({ q: c.Q, k: c.K, v: c.V, out, lse, dOut: out });
        const backwardPeak = memoryStats().peakBytes - before;
        const oneScoreMatrix = T * T * 4;
        // Outputs: out, lse, dQ, dK, dV (~0.2 MB here); scratch: a few [64, S] blocks per thread.
        expect(forwardPeak).toBeLessThan(oneScoreMatrix / 2);
        expect(backwardPeak).toBeLessThan(oneScoreMatrix / 2);
        expect(g.dQ.shape).toEqual([1, T, Hq, D]);
      });
    } finally {
      setNumThreads(saved);
    }
  });

  it("leaks no native memory", () => {
        expectNoLeak(() => {
      const c = randomCase(rng, { B: 1, T: 100, S: 130, Hq: 4, Hkv: 2, D: 8 });
      const { out, lse } = attention({ q: c.Q, k: c.K, v: c.V });
      attentionBackward({ q: c.Q, k: c.K, v: c.V, out, lse, dOut: out });
    });
  });
});
