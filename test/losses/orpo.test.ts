import { floats, orpoLoss, OrpoLossInputs, OrpoLossOptions, scope, tensor, Tensor } from "../../lib";
import { expectClose, expectScalarClose } from "../helpers/assert";
import { expectGradientMatches } from "../helpers/gradcheck";
import { Rng } from "../helpers/random";
import { logSigmoid, Metrics, PairBatch, refOrpo, sigmoid } from "./reference";
import { expectNoLeak } from "../helpers/memory";
import { itRejects } from "../helpers/rejects";

const f32 = (xs: ArrayLike<number>): Tensor => tensor("float32", [xs.length], xs);
const fr = (xs: number[]): Float64Array => Float64Array.from(xs, Math.fround);

function run(b: PairBatch, nll: number, beta?: number) {
  return orpoLoss(
    {
      policyChosen: f32(b.policyChosen),
      policyRejected: f32(b.policyRejected),
      chosenLengths: f32(b.chosenLengths),
      rejectedLengths: f32(b.rejectedLengths),
      nll,
    },
    beta === undefined ? {} : { beta },
  );
}

/** Answers of 1–120 tokens with average log-probs between about −3 and −0.01. */
function randomBatch(rng: Rng, pairs: number): PairBatch {
  const lengths = () => Float64Array.from({ length: pairs }, () => rng.int(1, 121));
  const chosenLengths = lengths();
  const rejectedLengths = lengths();
  const sums = (n: Float64Array) => Float64Array.from(n, (k) => Math.fround(-k * Math.exp(rng.uniform(-4.5, 1))));
  const empty = new Float64Array(pairs);
  return { policyChosen: sums(chosenLengths), policyRejected: sums(rejectedLengths), refChosen: empty, refRejected: empty, chosenLengths, rejectedLengths };
}

function expectMetrics(got: Record<string, number>, want: Metrics): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const k of Object.keys(want)) expectScalarClose(got[k], want[k], { rtol: 1e-6, atol: 1e-9 }, k);
}

describe("orpoLoss", () => {
  it("by hand: log-odds of the average log-probs, loss = nll − β·logσ(log_odds)", () => {
    scope(() => {
      // a = −2/4 = −0.5, b = −6/3 = −2.
      // log_odds = (a − b) − (log(1 − e^a) − log(1 − e^b)) = 1.5 − (log 0.39346934 − log 0.86466472)
      const b: PairBatch = { policyChosen: fr([-2]), policyRejected: fr([-6]), refChosen: fr([0]), refRejected: fr([0]),
        chosenLengths: fr([4]), rejectedLengths: fr([3]) };
      const logOdds = 1.5 - (Math.log(1 - Math.exp(-0.5)) - Math.log(1 - Math.exp(-2)));
      expectScalarClose(logOdds, 2.2873388, { rtol: 1e-7 }, "log_odds by hand");
      const r = run(b, 1.3, 0.1);
      expectScalarClose(r.loss, 1.3 - 0.1 * logSigmoid(logOdds), { rtol: 1e-6 });
      // d/dS_c = −β·σ(−lo)·(1/(1 − e^a))/n_c; d/dS_r = −β·σ(−lo)·(−1/(1 − e^b))/n_r.
      expectClose(floats(r.dPolicyChosen), [(-0.1 * sigmoid(-logOdds)) / (1 - Math.exp(-0.5)) / 4], { rtol: 1e-6 });
      expectClose(floats(r.dPolicyRejected), [(0.1 * sigmoid(-logOdds)) / (1 - Math.exp(-2)) / 3], { rtol: 1e-6 });
      expectMetrics(r.metrics as unknown as Record<string, number>, {
        "rewards/chosen": -0.05,
        "rewards/rejected": -0.2,
        "rewards/accuracies": 1,
        "rewards/margins": 0.15,
        "logps/chosen": -0.5,
        "logps/rejected": -2,
        nll_loss: 1.3,
        log_odds_ratio: logSigmoid(logOdds),
        log_odds_chosen: logOdds,
      });
    });
  });

  for (const pairs of [1, 7, 64]) {
    it(`${pairs} pairs match the float64 reference and finite differences`, () => {
      scope(() => {
        const b = randomBatch(new Rng(pairs), pairs);
        const r = run(b, 0.9, 0.25);
        const want = refOrpo(b, { beta: 0.25, nll: 0.9 });
        expectScalarClose(r.loss, want.loss, { rtol: 1e-6, atol: 1e-9 }, "loss");
        expectMetrics(r.metrics as unknown as Record<string, number>, want.metrics);
        const loss = (x: Float64Array) =>
          refOrpo({ ...b, policyChosen: x.subarray(0, pairs), policyRejected: x.subarray(pairs) }, { beta: 0.25, nll: 0.9 }).loss;
        const x = new Float64Array([...b.policyChosen, ...b.policyRejected]);
        expectGradientMatches([...floats(r.dPolicyChosen), ...floats(r.dPolicyRejected)], loss, x, { rtol: 1e-4, atol: 1e-9, h: 1e-6 });
      });
    });
  }

  it("stays accurate near p = 1 and across the −ln 2 branch of log(1 − e^x)", () => {
    scope(() => {
      // Averages −1e-6 (log(1 − e^x) ≈ log 1e-6, where 1 − e^x would cancel) and just either side of −ln 2.
      const b: PairBatch = { policyChosen: fr([-1e-6, -0.69314, -0.69316]), policyRejected: fr([-0.69316, -1e-6, -0.69314]),
        refChosen: fr([0, 0, 0]), refRejected: fr([0, 0, 0]), chosenLengths: fr([1, 1, 1]), rejectedLengths: fr([1, 1, 1]) };
      const r = run(b, 0);
      const want = refOrpo(b, { beta: 0.1, nll: 0 });
      expectScalarClose(r.loss, want.loss, { rtol: 1e-9 });
      expectScalarClose(r.metrics.log_odds_chosen, want.metrics.log_odds_chosen, { rtol: 1e-9 });
      const g = [...floats(r.dPolicyChosen), ...floats(r.dPolicyRejected)];
      expect(g.every(Number.isFinite)).toBe(true);
      const loss = (x: Float64Array) =>
        refOrpo({ ...b, policyChosen: x.subarray(0, 3), policyRejected: x.subarray(3) }, { beta: 0.1, nll: 0 }).loss;
      expectGradientMatches(g, loss, new Float64Array([...b.policyChosen, ...b.policyRejected]), { rtol: 1e-4, atol: 1e-7, h: 1e-9 });
    });
  });

  it("an empty answer counts as one token", () => {
    scope(() => {
      const b: PairBatch = { policyChosen: fr([-0.5]), policyRejected: fr([-2]), refChosen: fr([0]), refRejected: fr([0]),
        chosenLengths: fr([0]), rejectedLengths: fr([1]) };
      expectScalarClose(run(b, 0).loss, refOrpo({ ...b, chosenLengths: fr([1]) }, { beta: 0.1, nll: 0 }).loss, { rtol: 1e-12 });
    });
  });

  describe("validation", () => {
    const inputs = (): OrpoLossInputs => ({
      policyChosen: f32([-3, -4]),
      policyRejected: f32([-5, -6]),
      chosenLengths: f32([2, 3]),
      rejectedLengths: f32([2, 2]),
      nll: 1,
    });
    const cases: Array<[string, () => unknown, RegExp]> = [
      ["an average log-prob of 0", () => orpoLoss({ ...inputs(), policyRejected: f32([-5, 0]) }), /orpoLoss: 'policyRejected' must hold log-prob sums < 0 \(the odds need p < 1\), got 0 at \[1\]/],
      ["a positive log-prob", () => orpoLoss({ ...inputs(), policyChosen: f32([0.5, -4]) }), /'policyChosen' must hold log-prob sums < 0/],
      ["a missing nll", () => orpoLoss({ ...inputs(), nll: undefined as unknown as number }), /'nll' is required \(the chosen rows' mean token cross-entropy, a number\)/],
      ["a negative nll", () => orpoLoss({ ...inputs(), nll: -1 }), /'nll' must be in \[0/],
      ["missing lengths", () => orpoLoss({ ...inputs(), chosenLengths: undefined as unknown as Tensor }), /'chosenLengths' is required/],
      ["fractional lengths", () => orpoLoss({ ...inputs(), rejectedLengths: f32([2, 0.5]) }), /'rejectedLengths' must hold token counts/],
      ["beta 0", () => orpoLoss(inputs(), { beta: 0 }), /'beta' must be > 0/],
      ["mismatched shapes", () => orpoLoss({ ...inputs(), chosenLengths: f32([2]) }), /'chosenLengths' must have shape \[P\]/],
      ["no pairs", () => orpoLoss({ policyChosen: f32([]), policyRejected: f32([]), chosenLengths: f32([]), rejectedLengths: f32([]), nll: 0 }), /needs at least one pair/],
      ["an unknown option", () => orpoLoss(inputs(), { orpoAlpha: 0.1 } as OrpoLossOptions), /unknown option 'orpoAlpha'/],
    ];
    itRejects(cases);
  });

  it("leaks no native memory", () => {
        expectNoLeak(() => {
      const b = randomBatch(new Rng(5), 9);
      for (let k = 0; k < 5; ++k) run(b, 1);
    });
  });
});
