import { floats, grpoLoss, GrpoLossInputs, GrpoLossOptions, scope, tensor, Tensor } from "../../lib";
import { expectClose, expectScalarClose } from "../helpers/assert";
import { expectGradientMatches } from "../helpers/gradcheck";
import { Rng } from "../helpers/random";
import { GrpoBatch, Metrics, refGrpo } from "./reference";
import { expectNoLeak } from "../helpers/memory";
import { itRejects } from "../helpers/rejects";

const fr = (xs: number[]): Float64Array => Float64Array.from(xs, Math.fround);

function inputs(b: GrpoBatch): GrpoLossInputs {
  const bt = (x: Float64Array): Tensor => tensor("float32", [b.rows, b.seq], x);
  return {
    logp: bt(b.logp),
    ...(b.oldLogp ? { oldLogp: bt(b.oldLogp) } : {}),
    ...(b.refLogp ? { refLogp: bt(b.refLogp) } : {}),
    advantages: tensor("float32", [b.rows], b.advantages),
    mask: bt(b.mask),
  };
}

const run = (b: GrpoBatch, options: GrpoLossOptions) => grpoLoss(inputs(b), options);

/** Log-probs in (−5, 0), old within ~±0.3 (ratios clipped on both sides), ref within ~±0.5,
 * advantages of both signs, right padding of random length (some rows fully masked). */
function randomBatch(rng: Rng, rows: number, seq: number, withOld = true, withRef = true): GrpoBatch {
  const n = rows * seq;
  const logp = Float64Array.from({ length: n }, () => Math.fround(-rng.uniform(0.01, 5)));
  const mask = new Float64Array(n);
  for (let i = 0; i < rows; ++i) {
    const length = rng.next() < 0.15 ? 0 : rng.int(1, seq + 1);
    for (let t = 0; t < length; ++t) mask[i * seq + t] = 1;
  }
  return {
    rows,
    seq,
    logp,
    oldLogp: withOld ? Float64Array.from(logp, (v) => Math.fround(v + rng.normal() * 0.3)) : undefined,
    refLogp: withRef ? Float64Array.from(logp, (v) => Math.fround(v + rng.normal() * 0.5)) : undefined,
    advantages: rng.normals(rows),
    mask,
  };
}

function expectMetrics(got: Record<string, number>, want: Metrics): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const k of Object.keys(want)) expectScalarClose(got[k], want[k], { rtol: 1e-6, atol: 1e-12 }, k);
}

/**
 * Two rows, ε = 0.2 (ratios clipped to [0.8, 1.2]).
 * Row 0, A = +1, log-ratios [0.5, 0, −0.3]: ρ = [e^.5 = 1.6487, 1, e^−.3 = 0.7408]
 *   → −min(ρA, ρ̂A) = [−1.2 (high-clipped, no gradient), −1, −0.7408 (unclipped branch is smaller)].
 * Row 1, A = −2, log-ratios [0.5, −0.5], third token masked: ρ = [1.6487, e^−.5 = 0.6065]
 *   → [−min(−3.2974, −2.4) = 3.2974 (unclipped), −min(−1.2131, −1.6) = 1.6 (low-clipped, no gradient)].
 */
const hand: GrpoBatch = {
  rows: 2,
  seq: 3,
  logp: fr([-1, -2, -0.5, -1, -3, -0.25]),
  oldLogp: fr([-1.5, -2, -0.2, -1.5, -2.5, -7]),
  advantages: fr([1, -2]),
  mask: fr([1, 1, 1, 1, 1, 0]),
};
const e5 = Math.exp(0.5);
const tokenLosses = [-1.2, -1, -Math.exp(-0.3), 2 * e5, 1.6];
const handSum = tokenLosses.reduce((a, b) => a + b, 0);
// d ℓ / d logp per token (before the normaliser): −A·ρ on the unclipped branch, 0 when clipped.
const handGrads = [0, -1, -Math.exp(-0.3), 2 * e5, 0, 0];

describe("grpoLoss", () => {
  describe("hand-computed values", () => {
    it("bnpo: clipping on both sides with positive and negative advantages", () => {
      scope(() => {
        const r = run(hand, { lossType: "bnpo" });
        // Σ M·ℓ / Σ M = Σ ℓ / 5
        expectScalarClose(r.loss, handSum / 5, { rtol: 1e-6 });
        expectClose(floats(r.dLogp), handGrads.map((g) => g / 5), { rtol: 1e-6, atol: 1e-12 });
        expect(r.maskedTokens).toBe(5);
        // low-clipped: row 1 token 1 (ρ < 0.8, A < 0); high-clipped: row 0 token 0 (ρ > 1.2, A > 0).
        // Per-row fractions: low [0/3, 1/2] → min 0; high [1/3, 0/2] → max 1/3.
        expectMetrics(r.metrics as unknown as Record<string, number>, {
          "clip_ratio/low_mean": 1 / 5,
          "clip_ratio/high_mean": 1 / 5,
          "clip_ratio/region_mean": 2 / 5,
          "clip_ratio/low_min": 0,
          "clip_ratio/high_max": 1 / 3,
        });
      });
    });

    it("grpo divides each row by its length, then the mean over rows by the accumulation steps", () => {
      scope(() => {
        const r = run(hand, { lossType: "grpo", gradientAccumulationSteps: 2 });
        const row0 = (-1.2 - 1 - Math.exp(-0.3)) / 3;
        const row1 = (2 * e5 + 1.6) / 2;
        expectScalarClose(r.loss, (row0 + row1) / 2 / 2, { rtol: 1e-6 });
        const coefficient = [1 / 3, 1 / 3, 1 / 3, 1 / 2, 1 / 2, 1 / 2].map((c) => c / 2 / 2);
        expectClose(floats(r.dLogp), handGrads.map((g, k) => g * coefficient[k]), { rtol: 1e-6, atol: 1e-12 });
      });
    });

    it("dr_grpo divides by B · max_completion_length · GA", () => {
      scope(() => {
        const r = run(hand, { lossType: "dr_grpo", maxCompletionLength: 4, gradientAccumulationSteps: 3 });
        expectScalarClose(r.loss, handSum / (2 * 4) / 3, { rtol: 1e-6 });
        expectClose(floats(r.dLogp), handGrads.map((g) => g / 24), { rtol: 1e-6, atol: 1e-12 });
      });
    });

    it("dapo divides by num_items_in_batch / num_processes and ignores accumulation", () => {
      scope(() => {
        const r = run(hand, { lossType: "dapo", numItemsInBatch: 20, numProcesses: 2, gradientAccumulationSteps: 8 });
        expectScalarClose(r.loss, handSum / 10, { rtol: 1e-6 });
        expectClose(floats(r.dLogp), handGrads.map((g) => g / 10), { rtol: 1e-6, atol: 1e-12 });
        // A normaliser of 0 tokens is clamped to 1, as TRL does.
        expectScalarClose(run(hand, { numItemsInBatch: 0 }).loss, handSum, { rtol: 1e-6 });
      });
    });

    it("delta caps the unclipped ratio (two-sided clipping)", () => {
      scope(() => {
        // δ = 1.5: row 1 token 0 has ρ = 1.6487 > δ: −min(−1.5·2, −1.2·2) = 3, with no gradient.
        // Row 0 token 0 (A > 0) still takes the clipped 1.2 branch.
        const r = run(hand, { lossType: "bnpo", delta: 1.5 });
        expectScalarClose(r.loss, (handSum - 2 * e5 + 3) / 5, { rtol: 1e-6 });
        expectClose(floats(r.dLogp), [0, -1, -Math.exp(-0.3), 0, 0, 0].map((g) => g / 5), { rtol: 1e-6, atol: 1e-12 });
      });
    });

    it("k3 KL with β: e^{ref − logp} − (ref − logp) − 1 per token, its masked mean as 'kl'", () => {
      scope(() => {
        const ref = fr([-2, -2, -0.5, 0, -3, -9]);
        const b = { ...hand, refLogp: ref };
        const d = Array.from(ref, (r, k) => r - b.logp[k]); // [−1, 0, 0, 1, 0, masked]
        const k3 = d.map((x) => Math.exp(x) - x - 1);
        const r = run(b, { lossType: "bnpo", beta: 0.5 });
        const klSum = k3[0] + k3[1] + k3[2] + k3[3] + k3[4];
        expectScalarClose(r.loss, (handSum + 0.5 * klSum) / 5, { rtol: 1e-6 });
        expectScalarClose(r.metrics.kl!, klSum / 5, { rtol: 1e-6 });
        // d k3 / d logp = 1 − e^{ref − logp}
        const grads = handGrads.map((g, k) => (k === 5 ? 0 : (g + 0.5 * (1 - Math.exp(d[k]))) / 5));
        expectClose(floats(r.dLogp), grads, { rtol: 1e-6, atol: 1e-12 });
        // β = 0: no KL term and no 'kl' metric, as TRL (the reference is not read).
        expect("kl" in run(b, { lossType: "bnpo" }).metrics).toBe(false);
      });
    });

    it("on-policy (no oldLogp): ρ ≡ 1, loss −A per token, gradient −A per token", () => {
      scope(() => {
        const r = run({ ...hand, oldLogp: undefined }, { lossType: "bnpo" });
        // (3·(−1) + 2·2) / 5
        expectScalarClose(r.loss, 1 / 5, { rtol: 1e-6 });
        expectClose(floats(r.dLogp), [-0.2, -0.2, -0.2, 0.4, 0.4, 0], { rtol: 1e-6 });
        expect(r.metrics["clip_ratio/region_mean"]).toBe(0);
      });
    });

    it("sequence level (GSPO): one ratio per row from the mean masked log-ratio", () => {
      scope(() => {
        // Row 0: log w = (0.5 + 0 − 0.3)/3 = 0.2/3 → ρ = 1.0689 (inside the clip range): ℓ = −ρ per token.
        // Row 1: log w = (0.5 − 0.5)/2 = 0 → ρ = 1: ℓ = 2 per token.
        const rho0 = Math.exp(0.2 / 3);
        const r = run(hand, { lossType: "bnpo", importanceSamplingLevel: "sequence" });
        expectScalarClose(r.loss, (3 * -rho0 + 2 * 2) / 5, { rtol: 1e-6 });
        // Each masked token moves log w by 1/n_i: d/dlogp = (n_i·(−A·ρ)/n_i)/5 = −A·ρ/5.
        expectClose(floats(r.dLogp), [-rho0 / 5, -rho0 / 5, -rho0 / 5, 2 / 5, 2 / 5, 0], { rtol: 1e-6 });
        // Clip ratios average over rows: nothing clipped.
        expect(r.metrics["clip_ratio/low_mean"]).toBe(0);
      });
    });

    it("sequence-level clip ratios are per-row flags averaged over all rows (masked-out rows included)", () => {
      scope(() => {
        // Row 0: log w = 0.5 → ρ = 1.6487 > 1.2 with A > 0 (high); row 1 all masked: log w = 0, ρ = 1.
        const b: GrpoBatch = { rows: 2, seq: 2, logp: fr([-1, -1, -1, -1]), oldLogp: fr([-1.5, -1.5, -2, -2]),
          advantages: fr([1, -1]), mask: fr([1, 1, 0, 0]) };
        const r = run(b, { lossType: "grpo", importanceSamplingLevel: "sequence" });
        expectMetrics(r.metrics as unknown as Record<string, number>, {
          "clip_ratio/low_mean": 0,
          "clip_ratio/high_mean": 0.5,
          "clip_ratio/region_mean": 0.5,
          "clip_ratio/low_min": 0,
          "clip_ratio/high_max": 1,
        });
        // grpo: mean over the 2 rows of (2·(−1.2)/2, 0)
        expectScalarClose(r.loss, -0.6, { rtol: 1e-6 });
      });
    });
  });

  describe("matches the float64 reference and finite differences", () => {
    const lossTypes = ["grpo", "bnpo", "dr_grpo", "dapo"] as const;
    const levels = ["token", "sequence"] as const;
    const check = (b: GrpoBatch, options: GrpoLossOptions, maxChecks = 64) => {
      scope(() => {
        const r = run(b, options);
        const want = refGrpo(b, options);
        expectScalarClose(r.loss, want.loss, { rtol: 1e-6, atol: 1e-12 }, "loss");
        expectMetrics(r.metrics as unknown as Record<string, number>, want.metrics);
        let tokens = 0;
        for (const m of b.mask) tokens += m;
        expect(r.maskedTokens).toBe(tokens);
        // On-policy, old = logp detached: the differences perturb logp with old held at its value.
        const old = b.oldLogp ?? Float64Array.from(b.logp);
        const loss = (x: Float64Array) => refGrpo({ ...b, logp: x, oldLogp: old }, options).loss;
        expectGradientMatches(floats(r.dLogp), loss, Float64Array.from(b.logp), { rtol: 1e-4, atol: 1e-10, maxChecks });
      });
    };
    const common = { maxCompletionLength: 11, numItemsInBatch: 29, numProcesses: 2, gradientAccumulationSteps: 3 };
    let seed = 100;
    for (const lossType of lossTypes) {
      for (const level of levels) {
        for (const [old, beta, delta] of [[true, 0, undefined], [true, 0.04, 1.3], [false, 0.1, undefined]] as const) {
          const name = `${lossType}, ${level}, ${old ? "off-policy" : "on-policy"}, β = ${beta}, δ = ${delta ?? "off"}`;
          const s = ++seed;
          it(`${name}, [3, 7] and [1, 1]`, () => {
            const options = { ...common, lossType, importanceSamplingLevel: level, beta, delta, epsilonHigh: 0.28 };
            check(randomBatch(new Rng(s), 3, 7, old, beta !== 0), options);
            const one = randomBatch(new Rng(s + 1000), 1, 1, old, beta !== 0);
            one.mask[0] = 1;
            check(one, options);
          });
        }
      }
    }
    it("a realistic [64, 1024] batch (dapo, token level, β = 0.04)", () => {
      const b = randomBatch(new Rng(1), 64, 1024);
      check(b, { lossType: "dapo", beta: 0.04, epsilonHigh: 0.28, numItemsInBatch: 40000 }, 20);
    });
    it("a realistic [64, 1024] batch (grpo, sequence level)", () => {
      const b = randomBatch(new Rng(2), 64, 1024, true, false);
      check(b, { lossType: "grpo", importanceSamplingLevel: "sequence", gradientAccumulationSteps: 4 }, 20);
    });
  });

  describe("edge cases", () => {
    it("a row with an all-zero mask adds nothing but still counts in grpo's mean over rows", () => {
      scope(() => {
        const b: GrpoBatch = { ...hand, mask: fr([1, 1, 1, 0, 0, 0]) };
        const r = run(b, { lossType: "grpo" });
        expectScalarClose(r.loss, (-1.2 - 1 - Math.exp(-0.3)) / 3 / 2, { rtol: 1e-6 });
        expect(Array.from(floats(r.dLogp)).slice(3)).toEqual([0, 0, 0]);
        // The empty row's clip fraction is NaN and skipped by min/max: only row 0 counts.
        expect(r.metrics["clip_ratio/low_min"]).toBe(0);
        expectScalarClose(r.metrics["clip_ratio/high_max"], 1 / 3, { rtol: 1e-12 });
      });
    });

    it("no masked token at all: zero loss and gradient, NaN min/max like TRL's nanmin/nanmax", () => {
      scope(() => {
        const r = run({ ...hand, mask: new Float64Array(6) }, { lossType: "bnpo" });
        expect(r.loss).toBe(0);
        expect(r.maskedTokens).toBe(0);
        expect(Array.from(floats(r.dLogp)).every((g) => g === 0)).toBe(true);
        expect(r.metrics["clip_ratio/low_mean"]).toBe(0);
        expect(r.metrics["clip_ratio/low_min"]).toBeNaN();
        expect(r.metrics["clip_ratio/high_max"]).toBeNaN();
      });
    });

    it("gradient accumulation divides grpo, bnpo and dr_grpo but not dapo", () => {
      scope(() => {
        const b = randomBatch(new Rng(8), 4, 9);
        for (const lossType of ["grpo", "bnpo", "dr_grpo", "dapo"] as const) {
          const base = { lossType, maxCompletionLength: 9, numItemsInBatch: 17 };
          const one = run(b, base);
          const four = run(b, { ...base, gradientAccumulationSteps: 4 });
          const factor = lossType === "dapo" ? 1 : 4;
          expectScalarClose(four.loss * factor, one.loss, { rtol: 1e-12 }, lossType);
          expectClose(Array.from(floats(four.dLogp), (g) => g * factor), floats(one.dLogp), { rtol: 1e-6, atol: 1e-12 });
        }
      });
    });

    it("ε_high defaults to ε", () => {
      scope(() => {
        const b = randomBatch(new Rng(9), 5, 13);
        const implicit = run(b, { epsilon: 0.1, numItemsInBatch: 30 });
        const explicit = run(b, { epsilon: 0.1, epsilonHigh: 0.1, numItemsInBatch: 30 });
        expect(implicit.loss).toBe(explicit.loss);
        expect(implicit.metrics).toEqual(explicit.metrics);
      });
    });
  });

  describe("validation", () => {
    const b = randomBatch(new Rng(10), 2, 3);
    const ins = () => inputs(b);
    const dapo = { numItemsInBatch: 6 };
    const cases: Array<[string, () => unknown, RegExp]> = [
      ["mask values other than 0/1", () => grpoLoss({ ...ins(), mask: tensor("float32", [2, 3], [1, 1, 0.5, 1, 0, 0]) }, dapo), /grpoLoss: 'mask' values must be 0 or 1, got 0.5 at \[0, 2\]/],
      ["an int32 mask", () => grpoLoss({ ...ins(), mask: tensor("int32", [2, 3]) }, dapo), /'mask' must be a float32 tensor/],
      ["a mask of another shape", () => grpoLoss({ ...ins(), mask: tensor("float32", [2, 4]) }, dapo), /'mask' must have shape \[B, T\] \(B = 2 from 'logp', T = 3 from 'logp'\)/],
      ["advantages of another length", () => grpoLoss({ ...ins(), advantages: tensor("float32", [3]) }, dapo), /'advantages' must have shape \[B\] \(B = 2/],
      ["NaN advantages", () => grpoLoss({ ...ins(), advantages: tensor("float32", [2], [0, NaN]) }, dapo), /'advantages' must be finite, got NaN at \[1\]/],
      ["NaN log-probs", () => grpoLoss({ ...ins(), oldLogp: tensor("float32", [2, 3], [0, 0, 0, 0, NaN, 0]) }, dapo), /'oldLogp' must hold finite log-probs, got NaN at \[1, 1\]/],
      ["a missing reference with β > 0", () => grpoLoss({ ...ins(), refLogp: undefined }, { ...dapo, beta: 0.1 }), /'refLogp' \(float32 \[B, T\]\) is required when 'beta' != 0/],
      ["a negative β", () => grpoLoss(ins(), { ...dapo, beta: -0.1 }), /'beta' must be in \[0/],
      ["ε > 1", () => grpoLoss(ins(), { ...dapo, epsilon: 1.5 }), /'epsilon' must be in \[0, 1\]/],
      ["a negative ε_high", () => grpoLoss(ins(), { ...dapo, epsilonHigh: -0.1 }), /'epsilonHigh' must be in \[0/],
      ["δ = 0", () => grpoLoss(ins(), { ...dapo, delta: 0 }), /'delta' must be > 0, got 0/],
      ["an unsupported loss type", () => grpoLoss(ins(), { lossType: "cispo" as "dapo" }), /'lossType' must be one of grpo, bnpo, dr_grpo, dapo/],
      ["an unknown importance level", () => grpoLoss(ins(), { ...dapo, importanceSamplingLevel: "row" as "token" }), /'importanceSamplingLevel' must be one of token, sequence/],
      ["dr_grpo without max_completion_length", () => grpoLoss(ins(), { lossType: "dr_grpo" }), /'maxCompletionLength' is required for lossType 'dr_grpo'/],
      ["max_completion_length 0", () => grpoLoss(ins(), { lossType: "dr_grpo", maxCompletionLength: 0 }), /'maxCompletionLength' must be in \[1/],
      ["dapo without num_items_in_batch", () => grpoLoss(ins(), {}), /'numItemsInBatch' is required for lossType 'dapo'/],
      ["a negative num_items_in_batch", () => grpoLoss(ins(), { numItemsInBatch: -1 }), /'numItemsInBatch' must be in \[0/],
      ["0 processes", () => grpoLoss(ins(), { ...dapo, numProcesses: 0 }), /'numProcesses' must be in \[1/],
      ["0 accumulation steps", () => grpoLoss(ins(), { lossType: "bnpo", gradientAccumulationSteps: 0 }), /'gradientAccumulationSteps' must be in \[1/],
      ["fractional accumulation steps", () => grpoLoss(ins(), { lossType: "bnpo", gradientAccumulationSteps: 1.5 }), /'gradientAccumulationSteps' must be an integer/],
      ["no rows", () => grpoLoss({ logp: tensor("float32", [0, 3]), advantages: tensor("float32", [0]), mask: tensor("float32", [0, 3]) }, dapo), /needs at least one row and one position/],
      ["a rank-1 logp", () => grpoLoss({ ...ins(), logp: tensor("float32", [6]) }, dapo), /'logp' must have shape \[B, T\]/],
      ["an unknown option", () => grpoLoss(ins(), { ...dapo, epsilon_high: 0.3 } as GrpoLossOptions), /unknown option 'epsilon_high'/],
    ];
    itRejects(cases);
  });

  it("leaks no native memory", () => {
        expectNoLeak(() => {
      const b = randomBatch(new Rng(11), 8, 64);
      for (let k = 0; k < 5; ++k) run(b, { beta: 0.04, importanceSamplingLevel: "sequence", numItemsInBatch: 100 });
    });
  });
});
