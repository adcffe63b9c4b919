import { dpoLoss, DpoLossOptions, DpoLossType, floats, scope, tensor, Tensor } from "../../lib";
import { expectClose, expectScalarClose } from "../helpers/assert";
import { expectGradientMatches } from "../helpers/gradcheck";
import { Rng } from "../helpers/random";
import { Metrics, PairBatch, refDpo, sigmoid } from "./reference";
import { expectNoLeak } from "../helpers/memory";
import { itRejects } from "../helpers/rejects";

const f32 = (xs: ArrayLike<number>): Tensor => tensor("float32", [xs.length], xs);
const fr = (xs: number[]): Float64Array => Float64Array.from(xs, Math.fround);

function run(b: PairBatch, options: DpoLossOptions, withLengths = true) {
  return dpoLoss(
    {
      policyChosen: f32(b.policyChosen),
      policyRejected: f32(b.policyRejected),
      refChosen: f32(b.refChosen),
      refRejected: f32(b.refRejected),
      ...(withLengths ? { chosenLengths: f32(b.chosenLengths), rejectedLengths: f32(b.rejectedLengths) } : {}),
      ...(b.pairWeights ? { pairWeights: f32(b.pairWeights) } : {}),
    },
    options,
  );
}

/** Realistic sums: completions of 0–80 tokens at about −0.8 nats each; the reference close by. */
function randomBatch(rng: Rng, pairs: number, weighted = false): PairBatch {
  const lengths = () => Float64Array.from({ length: pairs }, () => rng.int(0, 81));
  const chosenLengths = lengths();
  const rejectedLengths = lengths();
  const sums = (n: Float64Array) => Float64Array.from(n, (k) => Math.fround(-0.8 * k + rng.normal() * 3 - 1));
  const near = (s: Float64Array) => Float64Array.from(s, (v) => Math.fround(v + rng.normal() * 4));
  const policyChosen = sums(chosenLengths);
  const policyRejected = sums(rejectedLengths);
  return {
    policyChosen,
    policyRejected,
    refChosen: near(policyChosen),
    refRejected: near(policyRejected),
    chosenLengths,
    rejectedLengths,
    pairWeights: weighted ? rng.uniforms(pairs, 0.05, 1.5) : undefined,
  };
}

/** The hand example: S_c = −10, S_r = −12, ref −11/−11 ⇒ u_c = 1, u_r = −1; n_c = 4, n_r = 2. */
const hand: PairBatch = {
  policyChosen: fr([-10]),
  policyRejected: fr([-12]),
  refChosen: fr([-11]),
  refRejected: fr([-11]),
  chosenLengths: fr([4]),
  rejectedLengths: fr([2]),
};

function expectMetrics(got: Record<string, number>, want: Metrics): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const k of Object.keys(want)) expectScalarClose(got[k], want[k], { rtol: 1e-6, atol: 1e-9 }, k);
}

const allTypes: DpoLossType[] = [
  "sigmoid", "hinge", "ipo", "robust", "exo_pair", "nca_pair", "bco_pair", "sppo_hard", "apo_zero", "apo_down",
  "discopop", "sigmoid_norm", "sft",
];
const fDivergences = ["reverse_kl", "forward_kl", "js_divergence", "alpha_divergence"] as const;

describe("dpoLoss", () => {
  describe("hand-computed values (β = 0.1 ⇒ h = β·Δ = 0.1·(1 − (−1)) = 0.2)", () => {
    const ls = (x: number) => Math.log1p(Math.exp(-x)); // −logσ(x) = log(1 + e^−x)
    const cases: Array<[DpoLossType, DpoLossOptions, number]> = [
      // −logσ(0.2) = log(1 + e^−0.2)
      ["sigmoid", {}, 0.598138869381],
      // max(0, 1 − 0.2)
      ["hinge", {}, 0.8],
      // Δ̄ = 1/4 − (−1)/2 = 0.75; (0.75 − 1/(2·0.1))² = (0.75 − 5)² = 18.0625
      ["ipo", {}, 18.0625],
      // [−0.9·logσ(0.2) + 0.1·logσ(−0.2)] / 0.8 = −logσ(0.2) − ε·h/(1 − 2ε) = 0.598138869 − 0.025
      ["robust", { labelSmoothing: 0.1 }, 0.598138869381 - 0.025],
      // σ(.2)(logσ(.2) − log(1 − 1e-3)) + σ(−.2)(logσ(−.2) − log 1e-3)
      ["exo_pair", { labelSmoothing: 1e-3 }, sigmoid(0.2) * (-ls(0.2) - Math.log(0.999)) + sigmoid(-0.2) * (-ls(-0.2) - Math.log(1e-3))],
      // a = 0.1, b = −0.1: −logσ(0.1) − ½logσ(−0.1) − ½logσ(0.1)
      ["nca_pair", {}, ls(0.1) + 0.5 * ls(-0.1) + 0.5 * ls(0.1)],
      // −logσ(0.1) − logσ(−(−0.1)) = 2·log(1 + e^−0.1)
      ["bco_pair", {}, 2 * 0.644396660073],
      // (1 − 5)² + (−1 + 5)²
      ["sppo_hard", {}, 32],
      // 1 − σ(0.1) + σ(−0.1) = 2σ(−0.1)
      ["apo_zero", {}, 2 * 0.475020812521],
      // σ(0.1) + 1 − σ(0.2)
      ["apo_down", {}, 0.524979187479 + 1 - 0.549833997312],
      // w = σ(0.2/0.05) = σ(4); (1 − w)·(−logσ(0.2)) + w·e^−0.2
      ["discopop", {}, (1 - sigmoid(4)) * 0.598138869381 + sigmoid(4) * Math.exp(-0.2)],
      // −logσ(0.1 · 0.75)
      ["sigmoid_norm", {}, ls(0.075)],
      // −Σ S_c / Σ n_c = 10 / 4
      ["sft", {}, 2.5],
    ];
    for (const [type, extra, expected] of cases) {
      it(type, () => {
        scope(() => {
          const r = run(hand, { beta: 0.1, lossType: type, ...extra });
          expectScalarClose(r.loss, expected, { rtol: 1e-6 }, type);
        });
      });
    }

    it("f-divergences change the scores s(u) (sigmoid loss)", () => {
      scope(() => {
        const e = Math.E;
        // forward_kl: s = −e^−u ⇒ Δ = −e^−1 + e^1
        const fwd = run(hand, { lossType: "sigmoid", fDivergenceType: "forward_kl" });
        expectScalarClose(fwd.loss, ls(0.1 * (e - 1 / e)), { rtol: 1e-6 }, "forward_kl");
        // js_divergence: s = logσ(u) ⇒ Δ = logσ(1) − logσ(−1) = 1
        const js = run(hand, { lossType: "sigmoid", fDivergenceType: "js_divergence" });
        expectScalarClose(js.loss, ls(0.1), { rtol: 1e-6 }, "js_divergence");
        // alpha 0.5: s = e^{−u/2}/(−1/2) ⇒ Δ = −2e^−0.5 + 2e^0.5
        const alpha = run(hand, { lossType: "sigmoid", fDivergenceType: "alpha_divergence" });
        expectScalarClose(alpha.loss, ls(0.1 * (2 * Math.exp(0.5) - 2 * Math.exp(-0.5))), { rtol: 1e-6 }, "alpha 0.5");
        // alpha 1 is the reverse-KL limit
        const one = run(hand, { lossType: "sigmoid", fDivergenceType: "alpha_divergence", fAlphaDivergenceCoef: 1 });
        expectScalarClose(one.loss, 0.598138869381, { rtol: 1e-6 }, "alpha 1");
      });
    });

    it("metrics: reverse-KL rewards β·u whatever the loss, and the policy sums", () => {
      scope(() => {
        const r = run(hand, { lossType: ["hinge", "sppo_hard"], fDivergenceType: "forward_kl" });
        expectMetrics(r.metrics as unknown as Record<string, number>, {
          "rewards/chosen": 0.1,
          "rewards/rejected": -0.1,
          "rewards/accuracies": 1,
          "rewards/margins": 0.2,
          "logps/chosen": -10,
          "logps/rejected": -12,
        });
      });
    });

    it("gradients: sigmoid dL/dS_c = −β·σ(−h), dL/dS_r = +β·σ(−h)", () => {
      scope(() => {
        const r = run(hand, { lossType: "sigmoid" });
        expectClose(floats(r.dPolicyChosen), [-0.1 * sigmoid(-0.2)], { rtol: 1e-6 });
        expectClose(floats(r.dPolicyRejected), [0.1 * sigmoid(-0.2)], { rtol: 1e-6 });
      });
    });

    it("a weighted list of loss types sums weight · mean, sft included (legacy rpo_alpha)", () => {
      scope(() => {
        // 1·0.598138869 + 0.5·2.5 + 2·0.8
        const r = run(hand, { lossType: ["sigmoid", "sft", "hinge"], lossWeights: [1, 0.5, 2] });
        expectScalarClose(r.loss, 0.598138869381 + 1.25 + 1.6, { rtol: 1e-6 });
        // d/dS_c: −0.1·σ(−0.2) + 0.5·(−1/4) + 2·(−0.1)
        expectClose(floats(r.dPolicyChosen), [-0.1 * sigmoid(-0.2) - 0.125 - 0.2], { rtol: 1e-6 });
      });
    });

    it("WPO pair weights multiply each pair's losses (sft by the mean weight)", () => {
      scope(() => {
        const two: PairBatch = {
          ...hand,
          policyChosen: fr([-10, -10]),
          policyRejected: fr([-12, -12]),
          refChosen: fr([-11, -11]),
          refRejected: fr([-11, -11]),
          chosenLengths: fr([4, 4]),
          rejectedLengths: fr([2, 2]),
          pairWeights: fr([0.5, 0.25]),
        };
        // mean(0.5·L, 0.25·L) = 0.375·L for both sigmoid and sft (sft = 20/8 = 2.5)
        const r = run(two, { lossType: ["sigmoid", "sft"] });
        expectScalarClose(r.loss, 0.375 * (0.598138869381 + 2.5), { rtol: 1e-6 });
      });
    });
  });

  describe("matches the float64 reference and finite differences on random batches", () => {
    const rng = new Rng(7);
    const check = (pairs: number, options: DpoLossOptions & { lossType: DpoLossType[] }, weighted: boolean) => {
      scope(() => {
        const b = randomBatch(rng, pairs, weighted);
        const refOptions = { ...options, beta: options.beta ?? 0.1, lossTypes: options.lossType };
        const r = run(b, options);
        const want = refDpo(b, refOptions);
        expectScalarClose(r.loss, want.loss, { rtol: 1e-6, atol: 1e-9 }, "loss");
        expectMetrics(r.metrics as unknown as Record<string, number>, want.metrics);
        const loss = (x: Float64Array) =>
          refDpo({ ...b, policyChosen: x.subarray(0, pairs), policyRejected: x.subarray(pairs) }, refOptions).loss;
        const x = new Float64Array([...b.policyChosen, ...b.policyRejected]);
        const analytic = [...floats(r.dPolicyChosen), ...floats(r.dPolicyRejected)];
        // Central differences lose about |L|·1e-16/h to rounding: allow for it where some pair's loss is huge.
        expectGradientMatches(analytic, loss, x, { rtol: 1e-4, atol: 1e-7 + Math.abs(want.loss) * 1e-10, label: "dPolicy" });
      });
    };
    const extras: Partial<Record<DpoLossType, Omit<DpoLossOptions, "lossType">>> = {
      robust: { labelSmoothing: 0.2 },
      exo_pair: { labelSmoothing: 0.01 },
      discopop: { discopopTau: 0.1 },
    };
    for (const type of allTypes) {
      for (const f of fDivergences) {
        it(`${type}, ${f}, 7 pairs`, () => {
          check(7, { lossType: [type], fDivergenceType: f, fAlphaDivergenceCoef: 0.3, ...extras[type] }, false);
        });
      }
      it(`${type}, 1 pair`, () => check(1, { lossType: [type], beta: 0.5, ...extras[type] }, false));
      it(`${type}, 64 pairs with WPO weights`, () => check(64, { lossType: [type], ...extras[type] }, true));
    }
    it("a weighted mixture of every loss type (alpha_divergence with α > 1)", () => {
      check(
        7,
        {
          lossType: allTypes,
          lossWeights: allTypes.map((_, k) => 0.1 * (k + 1)),
          labelSmoothing: 0.1,
          fDivergenceType: "alpha_divergence",
          fAlphaDivergenceCoef: 1.7,
        },
        true,
      );
    });
  });

  describe("edge cases", () => {
    it("β → 0: sigmoid → log 2 with gradients ∓β/2 per pair / P", () => {
      scope(() => {
        const b = randomBatch(new Rng(3), 5);
        const beta = 1e-6;
        const r = run(b, { beta, lossType: "sigmoid" });
        expectScalarClose(r.loss, Math.LN2, { rtol: 1e-5 });
        expectClose(floats(r.dPolicyChosen), new Array(5).fill(-beta / 2 / 5), { rtol: 1e-4 });
        expectClose(floats(r.dPolicyRejected), new Array(5).fill(beta / 2 / 5), { rtol: 1e-4 });
      });
    });

    it("equal log-probs: h = 0, loss log 2, no accuracy, zero margin", () => {
      scope(() => {
        const s = fr([-7, -3, -20]);
        const b: PairBatch = { ...hand, policyChosen: s, policyRejected: s, refChosen: s, refRejected: s,
          chosenLengths: fr([1, 1, 1]), rejectedLengths: fr([1, 1, 1]) };
        const r = run(b, { lossType: "sigmoid", beta: 0.1 });
        expectScalarClose(r.loss, Math.LN2, { rtol: 1e-12 });
        expect(r.metrics["rewards/accuracies"]).toBe(0);
        expect(r.metrics["rewards/margins"]).toBe(0);
        expectClose(floats(r.dPolicyChosen), [-0.05 / 3, -0.05 / 3, -0.05 / 3], { rtol: 1e-6 });
      });
    });

    it("label smoothing: robust with ε = 0 is sigmoid; exo_pair needs ε > 0", () => {
      scope(() => {
        const b = randomBatch(new Rng(4), 7);
        const robust = run(b, { lossType: "robust", labelSmoothing: 0 });
        const plain = run(b, { lossType: "sigmoid" });
        expectScalarClose(robust.loss, plain.loss, { rtol: 1e-12 });
        expectClose(floats(robust.dPolicyChosen), floats(plain.dPolicyChosen), { rtol: 1e-6 });
        expect(() => run(b, { lossType: "exo_pair" })).toThrow(/'labelSmoothing' must be > 0 for lossType 'exo_pair'/);
      });
    });

    it("empty completions: n = 0 counts as 1 for ipo and sigmoid_norm, sft's token count too", () => {
      scope(() => {
        const zero: PairBatch = { ...hand, policyChosen: fr([0]), chosenLengths: fr([0]), rejectedLengths: fr([0]) };
        const one: PairBatch = { ...zero, chosenLengths: fr([1]), rejectedLengths: fr([1]) };
        for (const lossType of ["ipo", "sigmoid_norm", "sft"] as const) {
          const a = run(zero, { lossType });
          const c = run(one, { lossType });
          expect(Number.isFinite(a.loss)).toBe(true);
          expectScalarClose(a.loss, c.loss, { rtol: 1e-12 }, lossType);
        }
        expect(run(zero, { lossType: "sft" }).loss === 0).toBe(true);
      });
    });

    it("alpha_divergence clamps (α − 1)·u at 80: the score saturates and its slope is 0", () => {
      scope(() => {
        // α = 3: t = 2u; u_c = 50 ⇒ t = 100 > 80 ⇒ s_c = e^80 / 2; u_r = −1 ⇒ s_r = e^−2 / 2.
        const b: PairBatch = { ...hand, policyChosen: fr([39]), refChosen: fr([-11]) };
        const r = run(b, { lossType: "hinge", beta: 1e-36, fDivergenceType: "alpha_divergence", fAlphaDivergenceCoef: 3 });
        const h = Math.fround(1e-36) * (Math.exp(80) / 2 - Math.exp(-2) / 2);
        expectScalarClose(r.loss, 1 - h, { rtol: 1e-6 });
        expect(floats(r.dPolicyChosen)[0]).toBe(0);
        expect(floats(r.dPolicyRejected)[0]).not.toBe(0);
      });
    });

    it("large margins stay finite (stable log-sigmoid and discopop's w·e^−h)", () => {
      scope(() => {
        const b: PairBatch = { ...hand, policyChosen: fr([-5000]), policyRejected: fr([-10]), refChosen: fr([-10]),
          refRejected: fr([-10]) };
        for (const lossType of ["sigmoid", "discopop", "nca_pair", "bco_pair", "exo_pair", "robust"] as const) {
          const r = run(b, { lossType, beta: 1, labelSmoothing: 0.1 });
          expect(Number.isFinite(r.loss)).toBe(true);
          expect(Number.isFinite(floats(r.dPolicyChosen)[0])).toBe(true);
        }
        // h = −4990: −logσ(h) ≈ 4990, and the sigmoid gradient saturates at −β.
        const s = run(b, { lossType: "sigmoid", beta: 1 });
        expectScalarClose(s.loss, 4990, { rtol: 1e-9 });
        expectClose(floats(s.dPolicyChosen), [-1], { rtol: 1e-7 });
      });
    });
  });

  describe("validation", () => {
    const b = randomBatch(new Rng(5), 3);
    const inputs = () => ({
      policyChosen: f32(b.policyChosen),
      policyRejected: f32(b.policyRejected),
      refChosen: f32(b.refChosen),
      refRejected: f32(b.refRejected),
      chosenLengths: f32(b.chosenLengths),
      rejectedLengths: f32(b.rejectedLengths),
    });
    const cases: Array<[string, () => unknown, RegExp]> = [
      ["beta 0", () => dpoLoss(inputs(), { beta: 0 }), /dpoLoss: 'beta' must be > 0, got 0/],
      ["beta −1", () => dpoLoss(inputs(), { beta: -1 }), /'beta' must be > 0/],
      ["beta NaN", () => dpoLoss(inputs(), { beta: NaN }), /'beta' must be finite/],
      ["unknown loss type", () => dpoLoss(inputs(), { lossType: "dpo" as DpoLossType }), /'lossType' must be one of sigmoid, hinge/],
      ["unknown loss type in a list", () => dpoLoss(inputs(), { lossType: ["sigmoid", "aot" as DpoLossType] }), /'lossType\[1\]' must be one of/],
      ["empty loss type list", () => dpoLoss(inputs(), { lossType: [] }), /'lossType' must name at least one loss type/],
      ["weights length", () => dpoLoss(inputs(), { lossType: ["sigmoid", "sft"], lossWeights: [1] }), /'lossWeights' must have one weight per loss type: got 1 weights for 2/],
      ["negative weight", () => dpoLoss(inputs(), { lossWeights: [-1] }), /'lossWeights\[0\]' must be >= 0/],
      ["exo_pair ε = 0", () => dpoLoss(inputs(), { lossType: "exo_pair" }), /'labelSmoothing' must be > 0 for lossType 'exo_pair'/],
      ["robust ε = 0.5", () => dpoLoss(inputs(), { lossType: "robust", labelSmoothing: 0.5 }), /'labelSmoothing' must be in \[0, 0.5\) for lossType 'robust'/],
      ["label smoothing 1", () => dpoLoss(inputs(), { labelSmoothing: 1 }), /'labelSmoothing' must be in \[0, 1\), got 1/],
      ["label smoothing < 0", () => dpoLoss(inputs(), { labelSmoothing: -0.1 }), /'labelSmoothing' must be in \[0, 1\), got -0.1/],
      ["an alpha coefficient beyond float32", () => dpoLoss(inputs(), { fAlphaDivergenceCoef: 1e39 }), /'fAlphaDivergenceCoef' must be in \[-3.40282e\+38, 3.40282e\+38\]/],
      ["f-divergence", () => dpoLoss(inputs(), { fDivergenceType: "kl" as "reverse_kl" }), /'fDivergenceType' must be one of reverse_kl/],
      ["alpha coef", () => dpoLoss(inputs(), { fAlphaDivergenceCoef: Infinity }), /'fAlphaDivergenceCoef' must be finite/],
      ["discopop τ", () => dpoLoss(inputs(), { discopopTau: 0 }), /'discopopTau' must be > 0/],
      ["ipo without lengths", () => dpoLoss({ ...inputs(), chosenLengths: undefined }, { lossType: "ipo" }), /'chosenLengths' \(completion token counts, float32 \[P\]\) is required for lossType 'ipo'/],
      ["sigmoid_norm without rejected lengths", () => dpoLoss({ ...inputs(), rejectedLengths: undefined }, { lossType: "sigmoid_norm" }), /'rejectedLengths' .* is required for lossType 'sigmoid_norm'/],
      ["sft without lengths", () => dpoLoss({ ...inputs(), chosenLengths: undefined }, { lossType: ["sigmoid", "sft"] }), /'chosenLengths' .* is required for lossType 'sft'/],
      ["negative length", () => dpoLoss({ ...inputs(), chosenLengths: f32([3, -1, 2]) }), /'chosenLengths' must hold token counts \(integers >= 0\), got -1 at \[1\]/],
      ["fractional length", () => dpoLoss({ ...inputs(), rejectedLengths: f32([3, 1, 2.5]) }), /'rejectedLengths' must hold token counts .* got 2.5 at \[2\]/],
      ["negative pair weight", () => dpoLoss({ ...inputs(), pairWeights: f32([1, -0.5, 1]) }), /'pairWeights' must hold finite weights >= 0, got -0.5 at \[1\]/],
      ["NaN log-prob", () => dpoLoss({ ...inputs(), refRejected: f32([-1, NaN, -2]) }), /'refRejected' must hold finite log-probs, got NaN at \[1\]/],
      ["−∞ log-prob", () => dpoLoss({ ...inputs(), policyChosen: f32([-Infinity, -1, -2]) }), /'policyChosen' must hold finite log-probs, got -Infinity at \[0\]/],
      ["shape mismatch", () => dpoLoss({ ...inputs(), refChosen: f32([-1, -2]) }), /'refChosen' must have shape \[P\] \(P = 3 from 'policyChosen'\)/],
      ["missing input", () => dpoLoss({ ...inputs(), refChosen: undefined as unknown as Tensor }), /'refChosen' is required/],
      ["int32 input", () => dpoLoss({ ...inputs(), policyRejected: tensor("int32", [3], [1, 2, 3]) }), /'policyRejected' must be a float32 tensor/],
      ["no pairs", () => dpoLoss({ policyChosen: f32([]), policyRejected: f32([]), refChosen: f32([]), refRejected: f32([]) }), /needs at least one pair/],
      ["unknown option", () => dpoLoss(inputs(), { rpoAlpha: 1 } as DpoLossOptions), /unknown option 'rpoAlpha'/],
    ];
    itRejects(cases);
  });

  it("leaks no native memory", () => {
        expectNoLeak(() => {
      const b = randomBatch(new Rng(9), 33, true);
      for (let k = 0; k < 5; ++k) run(b, { lossType: ["sigmoid", "ipo", "sft"] });
    });
  });
});
