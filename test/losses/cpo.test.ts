import { cpoLoss, CpoLossInputs, CpoLossOptions, CpoLossType, floats, scope, tensor, Tensor } from "../../lib";
import { expectClose, expectScalarClose } from "../helpers/assert";
import { expectGradientMatches } from "../helpers/gradcheck";
import { Rng } from "../helpers/random";
import { Metrics, PairBatch, refCpo, sigmoid } from "./reference";
import { expectNoLeak } from "../helpers/memory";
import { itRejects } from "../helpers/rejects";

const f32 = (xs: ArrayLike<number>): Tensor => tensor("float32", [xs.length], xs);
const fr = (xs: number[]): Float64Array => Float64Array.from(xs, Math.fround);
const ls = (x: number) => Math.log1p(Math.exp(-x)); // −logσ(x)

function run(b: PairBatch, options: CpoLossOptions, nll?: number) {
  return cpoLoss(
    {
      policyChosen: f32(b.policyChosen),
      policyRejected: f32(b.policyRejected),
      chosenLengths: f32(b.chosenLengths),
      rejectedLengths: f32(b.rejectedLengths),
      ...(nll === undefined ? {} : { nll }),
    },
    options,
  );
}

function randomBatch(rng: Rng, pairs: number): PairBatch {
  const lengths = () => Float64Array.from({ length: pairs }, () => rng.int(0, 90));
  const chosenLengths = lengths();
  const rejectedLengths = lengths();
  const sums = (n: Float64Array) => Float64Array.from(n, (k) => Math.fround(-k * rng.uniform(0.05, 1.5) - rng.uniform(0, 2)));
  const empty = new Float64Array(pairs);
  return { policyChosen: sums(chosenLengths), policyRejected: sums(rejectedLengths), refChosen: empty, refRejected: empty, chosenLengths, rejectedLengths };
}

function expectMetrics(got: Record<string, number>, want: Metrics): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const k of Object.keys(want)) expectScalarClose(got[k], want[k], { rtol: 1e-6, atol: 1e-9 }, k);
}

// S_c = −10 over 4 tokens (average −2.5), S_r = −12 over 3 tokens (average −4).
const hand: PairBatch = { policyChosen: fr([-10]), policyRejected: fr([-12]), refChosen: fr([0]), refRejected: fr([0]),
  chosenLengths: fr([4]), rejectedLengths: fr([3]) };

describe("cpoLoss", () => {
  describe("hand-computed values", () => {
    it("sigmoid on sums: −logσ(0.1·2) + cpo_alpha·nll, with label smoothing", () => {
      scope(() => {
        expectScalarClose(run(hand, { beta: 0.1 }, 1.5).loss, ls(0.2) + 1.5, { rtol: 1e-6 });
        // −0.9·logσ(0.2) − 0.1·logσ(−0.2) + 0.5·1.5
        const smooth = run(hand, { beta: 0.1, labelSmoothing: 0.1, cpoAlpha: 0.5 }, 1.5);
        expectScalarClose(smooth.loss, 0.9 * ls(0.2) + 0.1 * ls(-0.2) + 0.75, { rtol: 1e-6 });
        // d/dS_c = β·(−(1 − ε)σ(−h) + ε·σ(h))
        expectClose(floats(smooth.dPolicyChosen), [0.1 * (-0.9 * sigmoid(-0.2) + 0.1 * sigmoid(0.2))], { rtol: 1e-6 });
      });
    });

    it("hinge: max(0, 1 − 0.1·2) = 0.8", () => {
      scope(() => expectScalarClose(run(hand, { lossType: "hinge", cpoAlpha: 0 }).loss, 0.8, { rtol: 1e-6 }));
    });

    it("ipo on averages: (−2.5 + 4 − 1/(2·0.1))² = (1.5 − 5)² = 12.25", () => {
      scope(() => {
        const r = run(hand, { lossType: "ipo", cpoAlpha: 0 });
        expectScalarClose(r.loss, 12.25, { rtol: 1e-6 });
        // d/dS_c = 2·(1.5 − 5)/4
        expectClose(floats(r.dPolicyChosen), [-1.75], { rtol: 1e-6 });
      });
    });

    it("simpo (paper setting β = 2.5, γ = 1.375): −logσ(2.5·1.5 − 1.375)", () => {
      scope(() => {
        const r = run(hand, { lossType: "simpo", beta: 2.5, simpoGamma: 1.375, cpoAlpha: 0 });
        expectScalarClose(r.loss, ls(2.375), { rtol: 1e-6 });
        expectMetrics(r.metrics as unknown as Record<string, number>, {
          "rewards/chosen": -6.25,
          "rewards/rejected": -10,
          "rewards/accuracies": 1,
          "rewards/margins": 3.75,
          "logps/chosen": -2.5,
          "logps/rejected": -4,
          nll_loss: 0,
        });
      });
    });

    it("alphapo (α = 0.25, β = 2.5, γ = 0.1): rewards (1 − e^{−αx})/α, no NLL term", () => {
      scope(() => {
        // r(−2.5) = (1 − e^0.625)/0.25, r(−4) = (1 − e^1)/0.25
        const rc = (1 - Math.exp(0.625)) / 0.25;
        const rr = (1 - Math.E) / 0.25;
        const r = run(hand, { lossType: "alphapo", alpha: 0.25, beta: 2.5, simpoGamma: 0.1 }, 7);
        expectScalarClose(r.loss, ls(2.5 * (rc - rr) - 0.1), { rtol: 1e-6 });
        expect(r.metrics.nll_loss).toBe(0);
        expectScalarClose(r.metrics["rewards/chosen"], 2.5 * rc, { rtol: 1e-6 });
        // d/dS_c = β·(−σ(−h))·r'(x_c)/n_c with r'(x) = e^{−αx}
        const h = 2.5 * (rc - rr) - 0.1;
        expectClose(floats(r.dPolicyChosen), [(-2.5 * sigmoid(-h) * Math.exp(0.625)) / 4], { rtol: 1e-6 });
      });
    });
  });

  describe("matches the float64 reference and finite differences", () => {
    const types: CpoLossType[] = ["sigmoid", "hinge", "ipo", "simpo"];
    for (const lossType of types) {
      // AlphaPO reshapes e^{−αx}: keep α·x moderate on sums (α = 2^−6) and use the doc's 0.25 on averages.
      const averaged = lossType === "ipo" || lossType === "simpo";
      for (const alpha of [0, averaged ? 0.25 : 2 ** -6]) {
        for (const pairs of [1, 7, 64]) {
          it(`${lossType}, alpha ${alpha}, ${pairs} pairs`, () => {
            scope(() => {
              const b = randomBatch(new Rng(pairs * 17 + alpha * 10 + lossType.length), pairs);
              // Small β with sums keeps hinge and sigmoid away from saturation; simpo/ipo use averages.
              const beta = lossType === "simpo" ? 2 : lossType === "ipo" ? 0.5 : 0.05;
              const options = { lossType, beta, labelSmoothing: 0.15, simpoGamma: 0.7, alpha, cpoAlpha: 0.4 };
              const r = run(b, options, 2.2);
              const want = refCpo(b, { ...options, nll: 2.2 });
              expectScalarClose(r.loss, want.loss, { rtol: 1e-6, atol: 1e-9 }, "loss");
              expectMetrics(r.metrics as unknown as Record<string, number>, want.metrics);
              const loss = (x: Float64Array) =>
                refCpo({ ...b, policyChosen: x.subarray(0, pairs), policyRejected: x.subarray(pairs) }, { ...options, nll: 2.2 }).loss;
              const x = new Float64Array([...b.policyChosen, ...b.policyRejected]);
              const analytic = [...floats(r.dPolicyChosen), ...floats(r.dPolicyRejected)];
              expectGradientMatches(analytic, loss, x, { rtol: 1e-4, atol: 1e-8 + Math.abs(want.loss) * 1e-10 });
            });
          });
        }
      }
    }
  });

  it("empty answers count as one token for the averaged losses", () => {
    scope(() => {
      const zero: PairBatch = { ...hand, policyChosen: fr([0]), chosenLengths: fr([0]) };
      const one: PairBatch = { ...zero, chosenLengths: fr([1]) };
      expectScalarClose(run(zero, { lossType: "simpo", cpoAlpha: 0 }).loss, run(one, { lossType: "simpo", cpoAlpha: 0 }).loss, { rtol: 1e-15 });
    });
  });

  describe("validation", () => {
    const inputs = (): CpoLossInputs => ({
      policyChosen: f32([-3, -4]),
      policyRejected: f32([-5, -6]),
      chosenLengths: f32([2, 3]),
      rejectedLengths: f32([2, 2]),
      nll: 1,
    });
    const cases: Array<[string, () => unknown, RegExp]> = [
      ["alphapo with cpoAlpha ≠ 0", () => cpoLoss(inputs(), { lossType: "alphapo", cpoAlpha: 1 }), /cpoLoss: 'cpoAlpha' must be 0 \(or absent\) with lossType 'alphapo', got 1/],
      ["a missing nll while cpoAlpha ≠ 0", () => cpoLoss({ ...inputs(), nll: undefined }), /'nll' is required unless 'cpoAlpha' is 0/],
      ["a negative nll", () => cpoLoss({ ...inputs(), nll: -0.5 }), /'nll' must be in \[0/],
      ["simpo without lengths", () => cpoLoss({ ...inputs(), chosenLengths: undefined }, { lossType: "simpo" }), /'chosenLengths' \(completion token counts, float32 \[P\]\) is required for lossType 'simpo'/],
      ["alphapo without lengths", () => cpoLoss({ ...inputs(), rejectedLengths: undefined }, { lossType: "alphapo" }), /'rejectedLengths' .* is required for lossType 'alphapo'/],
      ["an unknown loss type", () => cpoLoss(inputs(), { lossType: "orpo" as CpoLossType }), /'lossType' must be one of sigmoid, hinge, ipo, simpo, alphapo/],
      ["beta 0", () => cpoLoss(inputs(), { beta: 0 }), /'beta' must be > 0/],
      ["label smoothing > 1", () => cpoLoss(inputs(), { labelSmoothing: 1.5 }), /'labelSmoothing' must be in \[0, 1\]/],
      ["a negative cpoAlpha", () => cpoLoss(inputs(), { cpoAlpha: -1 }), /'cpoAlpha' must be in \[0/],
      ["a non-finite alpha", () => cpoLoss(inputs(), { alpha: Infinity }), /'alpha' must be finite/],
      ["a non-finite simpoGamma", () => cpoLoss(inputs(), { simpoGamma: NaN }), /'simpoGamma' must be finite/],
      ["NaN log-probs", () => cpoLoss({ ...inputs(), policyChosen: f32([NaN, -1]) }), /'policyChosen' must hold finite log-probs/],
      ["negative lengths", () => cpoLoss({ ...inputs(), chosenLengths: f32([-2, 3]) }), /'chosenLengths' must hold token counts/],
      ["ipo without lengths", () => cpoLoss({ ...inputs(), chosenLengths: undefined }, { lossType: "ipo" }), /'chosenLengths' .* is required for lossType 'ipo'/],
      ["no pairs", () => cpoLoss({ policyChosen: f32([]), policyRejected: f32([]), nll: 0 }), /needs at least one pair/],
      ["an unknown option", () => cpoLoss(inputs(), { gamma: 1 } as CpoLossOptions), /unknown option 'gamma'/],
    ];
    itRejects(cases);
  });

  it("leaks no native memory", () => {
        expectNoLeak(() => {
      const b = randomBatch(new Rng(6), 11);
      for (let k = 0; k < 5; ++k) run(b, { lossType: "simpo" }, 1);
    });
  });
});
