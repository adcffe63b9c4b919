import {
  floats,
  ints,
  logprobGather,
  logprobGatherBackward,
  LogprobGatherOptions,
  memoryStats,
  numThreads,
  resetPeakBytes,
  scope,
  setNumThreads,
  tensor,
} from "../lib";
import { expectClose } from "./helpers/assert";
import { expectGradientMatches } from "./helpers/gradcheck";
import { Rng } from "./helpers/random";

const IGNORE = -100;

interface Problem {
  n: number;
  d: number;
  v: number;
  hidden: Float64Array; // [N, D], float32-representable
  weight: Float64Array; // [V, D]
  targets: Int32Array; // [N]
}

interface Reference {
  logp: Float64Array;
  lse: Float64Array;
  entropy: Float64Array;
  logitMean: Float64Array;
  /** The float64 logits of every token, for checking argmax up to float32 near-ties. */
  logits: Float64Array[];
}

/** Naive float64 reference: materialises each token's logits z = h·Wᵀ / T. */
function reference(p: Problem, temperature = 1, ignoreIndex = IGNORE, hidden = p.hidden, weight = p.weight): Reference {
  const { n, d, v, targets } = p;
  const out: Reference = {
    logp: new Float64Array(n),
    lse: new Float64Array(n),
    entropy: new Float64Array(n),
    logitMean: new Float64Array(n),
    logits: [],
  };
  for (let i = 0; i < n; ++i) {
    const z = new Float64Array(v);
    out.logits.push(z);
    if (targets[i] === ignoreIndex) continue;
    for (let j = 0; j < v; ++j) {
      let s = 0;
      for (let k = 0; k < d; ++k) s += hidden[i * d + k] * weight[j * d + k];
      z[j] = s / temperature;
    }
    const m = Math.max(...z);
    let sumExp = 0;
    for (const x of z) sumExp += Math.exp(x - m);
    const lse = m + Math.log(sumExp);
    let entropy = 0;
    let total = 0;
    for (const x of z) {
      const logProb = x - lse;
      entropy -= Math.exp(logProb) * logProb;
      total += x;
    }
    out.logp[i] = z[targets[i]] - lse;
    out.lse[i] = lse;
    out.entropy[i] = entropy;
    out.logitMean[i] = total / v;
  }
  return out;
}

function makeProblem(rng: Rng, n: number, d: number, v: number, ignoredFraction = 0, scale = 1): Problem {
  const targets = rng.ints(n, 0, v);
  for (let i = 0; i < n; ++i) if (rng.next() < ignoredFraction) targets[i] = IGNORE;
  return { n, d, v, hidden: rng.normals(n * d, scale), weight: rng.normals(v * d, scale), targets };
}

function inputs(p: Problem): Pick<LogprobGatherOptions, "hidden" | "weight" | "targets"> {
  return {
    hidden: tensor("float32", [p.n, p.d], p.hidden),
    weight: tensor("float32", [p.v, p.d], p.weight),
    targets: tensor("int32", [p.n], p.targets),
  };
}

/** Checks every output of the native forward against the float64 reference. */
function checkForward(p: Problem, options: { temperature?: number; chunkSize?: number }): void {
  scope(() => {
    const r = logprobGather({ ...inputs(p), ...options, entropy: true, logitMean: true, argmax: true });
    const want = reference(p, options.temperature ?? 1);
    const tol = { rtol: 1e-4, atol: 1e-4 };
    expectClose(floats(r.logp), want.logp, tol, "logp");
    expectClose(floats(r.lse), want.lse, tol, "lse");
    expectClose(floats(r.entropy!), want.entropy, tol, "entropy");
    expectClose(floats(r.logitMean!), want.logitMean, tol, "logitMean");
    const argmax = ints(r.argmax!);
    for (let i = 0; i < p.n; ++i) {
      if (p.targets[i] === IGNORE) {
        expect(argmax[i]).toBe(-1);
        continue;
      }
      // The native argmax must hold the largest logit (up to float32 rounding of near-ties).
      const z = want.logits[i];
      expect(argmax[i]).toBeGreaterThanOrEqual(0);
      expect(z[argmax[i]]).toBeGreaterThanOrEqual(Math.max(...z) - 1e-4);
    }
  });
}

describe("logprobGather forward", () => {
  const rng = new Rng(7);
  const cases: Array<[string, Problem, { temperature?: number; chunkSize?: number }]> = [
    ["one token, V=259, D=3", makeProblem(rng, 1, 3, 259), {}],
    ["N=13 with ignored tokens, chunkSize 1", makeProblem(rng, 13, 5, 259, 0.4), { chunkSize: 1 }],
    ["N=13 with ignored tokens, chunkSize 7, T=0.7", makeProblem(rng, 13, 5, 259, 0.4), { chunkSize: 7, temperature: 0.7 }],
    ["N=13, chunkSize larger than N, T=1.5", makeProblem(rng, 13, 6, 301, 0.3), { chunkSize: 64, temperature: 1.5 }],
    ["N=40, many chunks (chunkSize 2), V=1100", makeProblem(rng, 40, 7, 1100, 0.2), { chunkSize: 2 }],
    ["realistic N=256, V=1000, D=64", makeProblem(rng, 256, 64, 1000, 0.25, 0.3), {}],
    ["realistic N=256, V=1000, D=64, chunkSize 7, T=0.6", makeProblem(rng, 256, 64, 1000, 0.25, 0.3), { chunkSize: 7, temperature: 0.6 }],
    ["small N, large V (split vocabulary): N=3, V=5000, D=16", makeProblem(rng, 3, 16, 5000), {}],
    ["large logits (|z| ~ 40): N=9, V=700, D=32", makeProblem(rng, 9, 32, 700, 0.2, 1.2), { temperature: 0.9 }],
  ];
  for (const [name, problem, options] of cases) {
    it(`matches a float64 reference: ${name}`, () => checkForward(problem, options));
  }

  it("gives zeros and argmax −1 when every token is ignored", () => {
    scope(() => {
      const p = makeProblem(rng, 5, 4, 259, 1);
      const r = logprobGather({ ...inputs(p), entropy: true, logitMean: true, argmax: true });
      expect(Array.from(floats(r.logp))).toEqual([0, 0, 0, 0, 0]);
      expect(Array.from(floats(r.lse))).toEqual([0, 0, 0, 0, 0]);
      expect(Array.from(floats(r.entropy!))).toEqual([0, 0, 0, 0, 0]);
      expect(Array.from(floats(r.logitMean!))).toEqual([0, 0, 0, 0, 0]);
      expect(Array.from(ints(r.argmax!))).toEqual([-1, -1, -1, -1, -1]);
      const g = logprobGatherBackward({ ...inputs(p), lse: r.lse, dLogp: tensor("float32", [5], [1, 2, 3, 4, 5]), wantDWeight: true });
      expect(floats(g.dHidden).every((x) => x === 0)).toBe(true);
      expect(floats(g.dWeight!).every((x) => x === 0)).toBe(true);
    });
  });

  it("is exact on a hand-computed case, and argmax takes the first of tied maxima", () => {
    scope(() => {
      // D = 1, hidden = [1]; weight rows give logits z = [1, 3, 2, 3]. Σ e^z = e + 2e³ + e²;
      // lse = 3 + log(e^−2 + 2 + e^−1) = 3 + log(2.5032147244) = 3.9175757956; logp(target 2) = 2 − lse.
      const lse = 3 + Math.log(Math.exp(-2) + 2 + Math.exp(-1));
      const r = logprobGather({
        hidden: tensor("float32", [1, 1], [1]),
        weight: tensor("float32", [4, 1], [1, 3, 2, 3]),
        targets: tensor("int32", [1], [2]),
        argmax: true,
        logitMean: true,
      });
      expectClose(floats(r.lse), [lse], { rtol: 1e-6 });
      expectClose(floats(r.logp), [2 - lse], { rtol: 1e-6 });
      expectClose(floats(r.logitMean!), [9 / 4], { rtol: 1e-7 });
      expect(Array.from(ints(r.argmax!))).toEqual([1]);
    });
  });

  it("honours a custom ignoreIndex (which may even be a valid id)", () => {
    scope(() => {
      const p = makeProblem(rng, 8, 4, 50);
      p.targets.set([0, 3, 0, 7, 0, 1, 2, 0]);
      const r = logprobGather({ ...inputs(p), ignoreIndex: 0 });
      const want = reference(p, 1, 0);
      expectClose(floats(r.logp), want.logp, { rtol: 1e-4, atol: 1e-4 });
      expect(Array.from(floats(r.logp)).filter((_, i) => p.targets[i] === 0)).toEqual([0, 0, 0, 0]);
    });
  });
});

/** L = Σ_i a_i·logp_i + Σ_i b_i·entropy_i in float64, as a function of hidden or weight. */
function lossFn(p: Problem, a: Float64Array, b: Float64Array | undefined, temperature: number, of: "hidden" | "weight") {
  return (x: Float64Array): number => {
    const r = of === "hidden" ? reference(p, temperature, IGNORE, x, p.weight) : reference(p, temperature, IGNORE, p.hidden, x);
    let s = 0;
    for (let i = 0; i < p.n; ++i) s += a[i] * r.logp[i] + (b ? b[i] * r.entropy[i] : 0);
    return s;
  };
}

describe("logprobGatherBackward", () => {
  const rng = new Rng(11);
  const cases: Array<[string, Problem, { temperature?: number; chunkSize?: number }, boolean]> = [
    ["N=1, V=259, D=3, with dEntropy", makeProblem(rng, 1, 3, 259), {}, true],
    ["N=13 with ignored tokens, chunkSize 1", makeProblem(rng, 13, 5, 61, 0.4), { chunkSize: 1 }, false],
    ["N=13 with ignored tokens, chunkSize 7, T=0.7, with dEntropy", makeProblem(rng, 13, 5, 61, 0.4), { chunkSize: 7, temperature: 0.7 }, true],
    ["N=20, chunkSize 1 (more chunks than tasks), T=1.3, with dEntropy", makeProblem(rng, 20, 4, 300, 0.1), { chunkSize: 1, temperature: 1.3 }, true],
    ["N=4, V=1500 (vocabulary split, partial dH slots), with dEntropy", makeProblem(rng, 4, 6, 1500), { temperature: 0.8 }, true],
  ];
  for (const [name, p, options, withEntropy] of cases) {
    it(`matches finite differences: ${name}`, () => {
      scope(() => {
        const t = options.temperature ?? 1;
        const io = inputs(p);
        const fwd = logprobGather({ ...io, ...options, entropy: true });
        const a = rng.normals(p.n);
        const b = withEntropy ? rng.normals(p.n) : undefined;
        const g = logprobGatherBackward({
          ...io,
          ...options,
          lse: fwd.lse,
          entropy: fwd.entropy,
          dLogp: tensor("float32", [p.n], a),
          dEntropy: b ? tensor("float32", [p.n], b) : undefined,
          wantDWeight: true,
        });
        const dH = floats(g.dHidden);
        expectGradientMatches(dH, lossFn(p, a, b, t, "hidden"), p.hidden, { label: "dHidden", maxChecks: 48 });
        expectGradientMatches(floats(g.dWeight!), lossFn(p, a, b, t, "weight"), p.weight, { label: "dWeight", maxChecks: 48 });
        for (let i = 0; i < p.n; ++i) {
          if (p.targets[i] !== IGNORE) continue;
          expect(Array.from(dH.subarray(i * p.d, (i + 1) * p.d)).every((x) => x === 0)).toBe(true);
        }
      });
    });
  }

  it("matches finite differences at a realistic shape (N=256, V=1000, D=64, sampled elements)", () => {
    scope(() => {
      const p = makeProblem(rng, 256, 64, 1000, 0.25, 0.3);
      const io = inputs(p);
      const fwd = logprobGather({ ...io, entropy: true });
      const a = rng.normals(p.n);
      const b = rng.normals(p.n);
      const g = logprobGatherBackward({
        ...io, lse: fwd.lse, entropy: fwd.entropy, dLogp: tensor("float32", [p.n], a),
        dEntropy: tensor("float32", [p.n], b), wantDWeight: true,
      });
      expectGradientMatches(floats(g.dHidden), lossFn(p, a, b, 1, "hidden"), p.hidden, { label: "dHidden", maxChecks: 6 });
      expectGradientMatches(floats(g.dWeight!), lossFn(p, a, b, 1, "weight"), p.weight, { label: "dWeight", maxChecks: 6 });
    });
  });

  it("overwrites dHidden, accumulates into it with accumulateDHidden, and always accumulates dWeight", () => {
    scope(() => {
      const p = makeProblem(rng, 9, 5, 70, 0.3);
      const io = inputs(p);
      const fwd = logprobGather(io);
      const dLogp = tensor("float32", [p.n], rng.normals(p.n));
      const base = logprobGatherBackward({ ...io, lse: fwd.lse, dLogp, wantDWeight: true });
      const gradH = floats(base.dHidden);
      const gradW = floats(base.dWeight!);

      const priorH = rng.normals(p.n * p.d);
      const priorW = rng.normals(p.v * p.d);
      const dHidden = tensor("float32", [p.n, p.d], priorH);
      const dWeight = tensor("float32", [p.v, p.d], priorW);
      const acc = logprobGatherBackward({ ...io, lse: fwd.lse, dLogp, dHidden, dWeight, accumulateDHidden: true });
      expect(acc.dHidden).toBe(dHidden);
      expect(acc.dWeight).toBe(dWeight);
      expectClose(floats(dHidden), priorH.map((x, i) => x + gradH[i]), { rtol: 1e-6, atol: 1e-6 }, "accumulated dHidden");
      expectClose(floats(dWeight), priorW.map((x, i) => x + gradW[i]), { rtol: 1e-6, atol: 1e-6 }, "accumulated dWeight");

      dHidden.copyFrom(priorH);
      const over = logprobGatherBackward({ ...io, lse: fwd.lse, dLogp, dHidden });
      expect(over.dWeight).toBeUndefined();
      expect(Array.from(floats(dHidden))).toEqual(Array.from(gradH));
    });
  });

  it("reads entropy only with dEntropy: dEntropy = 0 gives the plain log-prob gradient", () => {
    scope(() => {
      const p = makeProblem(rng, 6, 4, 90);
      const io = inputs(p);
      const fwd = logprobGather({ ...io, entropy: true });
      const dLogp = tensor("float32", [p.n], rng.normals(p.n));
      const plain = logprobGatherBackward({ ...io, lse: fwd.lse, dLogp });
      const zeroEnt = logprobGatherBackward({ ...io, lse: fwd.lse, entropy: fwd.entropy, dLogp, dEntropy: tensor("float32", [p.n]) });
      expect(Array.from(floats(zeroEnt.dHidden))).toEqual(Array.from(floats(plain.dHidden)));
    });
  });
});

describe("logprobGather threading and memory", () => {
  const rng = new Rng(23);

  /** Forward and backward outputs as plain arrays, for upstream gradients a (logp) and b (entropy). */
  function runAll(p: Problem, chunkSize: number, a: Float64Array, b: Float64Array): number[][] {
    return scope(() => {
      const io = inputs(p);
      const f = logprobGather({ ...io, chunkSize, entropy: true, logitMean: true, argmax: true });
      const g = logprobGatherBackward({
        ...io, chunkSize, lse: f.lse, entropy: f.entropy, dLogp: tensor("float32", [p.n], a),
        dEntropy: tensor("float32", [p.n], b), wantDWeight: true,
      });
      return [f.logp, f.lse, f.entropy!, f.logitMean!, f.argmax!, g.dHidden, g.dWeight!].map((t) => Array.from(t.toArray()));
    });
  }

  // Small N with a large V splits the vocabulary across tasks (forward ranges, backward partial
  // dH slots); few chunks mixes both; many chunks runs whole-chunk forward tiles and P = 1.
  it.each([
    ["small N, large V", 16, 8, 20000, 256],
    ["few chunks", 50, 8, 3000, 16],
    ["many chunks", 300, 8, 2000, 8],
  ])("gives bit-identical results for 1, 2 and 3 threads (%s)", (_name, n, d, v, chunkSize) => {
    const p = makeProblem(rng, n as number, d as number, v as number, 0.2);
    const a = rng.normals(p.n);
    const b = rng.normals(p.n);
    const saved = numThreads();
    const results: number[][][] = [];
    try {
      for (const threads of [1, 2, 3]) {
        setNumThreads(threads);
        results.push(runAll(p, chunkSize as number, a, b));
      }
    } finally {
      setNumThreads(saved);
    }
    expect(results[1]).toEqual(results[0]);
    expect(results[2]).toEqual(results[0]);
  });

  it("never allocates [N, V]: peak memory at N=4096, V=32000, D=64 stays under 16 MB (the logits would be 524 MB)", () => {
    const [n, d, v] = [4096, 64, 32000];
    expect(n * v * 4).toBeGreaterThan(524e6);
    const saved = numThreads();
    setNumThreads(2); // per-thread scratch scales with the thread count: pin it for the bound
    try {
      scope(() => {
        const p: Problem = { n, d, v, hidden: rng.normals(n * d, 0.2), weight: rng.normals(v * d, 0.2), targets: rng.ints(n, 0, v) };
        const io = inputs(p);
        const dLogp = tensor("float32", [n], rng.normals(n));
        const dWeight = tensor("float32", [v, d]);
        const dHidden = tensor("float32", [n, d]);

        let before = memoryStats().liveBytes;
        resetPeakBytes();
        const f = logprobGather(io); // allocates its outputs logp, lse: 32 KiB
        const forwardPeak = memoryStats().peakBytes - before;

        before = memoryStats().liveBytes;
        resetPeakBytes();
        logprobGatherBackward({ ...io, lse: f.lse, dLogp, dHidden, dWeight });
        const backwardPeak = memoryStats().peakBytes - before;

        // From the scratch formulas in logprob_gather.cpp with M = 4096, cs = 256, bc = 512, T = 2:
        // forward 4·M + 40·M + 4·T·cs·(D + bc) ≈ 1.4 MB, backward 4·M + 4·T·cs·(2·D + bc) ≈ 1.3 MB
        // (1.65 and 1.59 MB measured, with sgemm's packing). 16 MB leaves room for any GEMM's packing
        // buffers and is still 1/32 of the logits.
        expect(forwardPeak).toBeLessThan(16e6);
        expect(backwardPeak).toBeLessThan(16e6);
      });
    } finally {
      setNumThreads(saved);
    }
  });

  it("leaks nothing", () => {
    const p = makeProblem(rng, 30, 8, 500, 0.3);
    const before = memoryStats();
    scope(() => {
      const io = inputs(p);
      const f = logprobGather({ ...io, entropy: true, logitMean: true, argmax: true });
      logprobGatherBackward({ ...io, lse: f.lse, entropy: f.entropy, dLogp: f.logp, dEntropy: f.logp, wantDWeight: true });
    });
    const after = memoryStats();
    expect(after.liveBytes).toBe(before.liveBytes);
    expect(after.liveBuffers).toBe(before.liveBuffers);
  });
});

describe("logprobGather argument checks", () => {
  const rng = new Rng(5);

  it("rejects invalid arguments with messages naming the problem", () => {
    scope(() => {
      const p = makeProblem(rng, 4, 3, 10);
      const io = inputs(p);
      const lse = tensor("float32", [4]);
      const dLogp = tensor("float32", [4]);
      const bad = tensor("int32", [4], [1, 2, 10, -1]);
      expect(() => logprobGather({ ...io, targets: bad })).toThrow(/'targets' must hold token ids in \[0, 10\) or the ignoreIndex -100, got 10 at \[2\]/);
      expect(() => logprobGather({ ...io, targets: tensor("int32", [4], [1, 2, 3, -1]) })).toThrow(/got -1 at \[3\]/);
      expect(() => logprobGatherBackward({ ...io, targets: bad, lse, dLogp })).toThrow(/'targets' must hold token ids .* got 10 at \[2\]/);
      expect(() => logprobGather({ ...io, temperature: 0 })).toThrow(/'temperature' must be > 0/);
      expect(() => logprobGather({ ...io, temperature: -1 })).toThrow(/temperature/);
      expect(() => logprobGather({ ...io, temperature: Number.NaN })).toThrow(/'temperature' must be finite/);
      expect(() => logprobGather({ ...io, temperature: Infinity })).toThrow(/'temperature' must be finite/);
      expect(() => logprobGather({ ...io, chunkSize: 0 })).toThrow(/'chunkSize' must be in \[1,/);
      expect(() => logprobGather({ ...io, chunkSize: 2.5 })).toThrow(/'chunkSize' must be an integer/);
      expect(() => logprobGather({ ...io, hidden: tensor("float32", [4, 5]) })).toThrow(/'weight' must have shape \[V, D\]/);
      expect(() => logprobGather({ ...io, targets: tensor("int32", [5]) })).toThrow(/'targets' must have shape \[N\]/);
      expect(() => logprobGather({ ...io, targets: tensor("float32", [4]) })).toThrow(/'targets' must be a int32 tensor/);
      expect(() => logprobGather({ ...io, weight: tensor("float32", [0, 3]) })).toThrow(/at least one row/);
      expect(() => logprobGather({ ...io, entropie: true } as LogprobGatherOptions)).toThrow(/unknown option 'entropie'/);
      expect(() => logprobGatherBackward({ ...io, lse, dLogp, dEntropy: dLogp })).toThrow(/'dEntropy' needs 'entropy'/);
      expect(() => logprobGatherBackward({ ...io, lse, dLogp, accumulateDHidden: true })).toThrow(/needs a 'dHidden'/);
      expect(() => logprobGatherBackward({ ...io, lse, dLogp, dWeight: tensor("float32", [10, 3]), wantDWeight: false })).toThrow(
        /'dWeight' was given but 'wantDWeight' is false/,
      );
      expect(() => logprobGatherBackward({ ...io, lse, dLogp, dHidden: io.hidden })).toThrow(/'dHidden' and 'hidden' must not share memory/);
      expect(() => logprobGatherBackward({ ...io, lse, dLogp, dWeight: tensor("float32", [3, 10]) })).toThrow(/'dWeight' must have shape/);
    });
  });
});
