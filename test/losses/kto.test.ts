import { floats, ktoLoss, KtoLossOptions, scope, tensor, Tensor } from "../../lib";
import { expectClose, expectScalarClose } from "../helpers/assert";
import { expectGradientMatches } from "../helpers/gradcheck";
import { Rng } from "../helpers/random";
import { KtoBatch, Metrics, refKto, sigmoid } from "./reference";
import { expectNoLeak } from "../helpers/memory";
import { itRejects } from "../helpers/rejects";

const f32 = (xs: ArrayLike<number>): Tensor => tensor("float32", [xs.length], xs);

function run(b: KtoBatch, options: KtoLossOptions) {
  return ktoLoss(
    { policyLogps: f32(b.policy), refLogps: f32(b.ref), desirable: tensor("int32", [b.desirable.length], b.desirable) },
    options,
  );
}

function randomBatch(rng: Rng, rows: number, desirableShare = 0.5): KtoBatch {
  const policy = Float64Array.from({ length: rows }, () => Math.fround(-40 + rng.normal() * 15));
  return {
    policy,
    ref: Float64Array.from(policy, (s) => Math.fround(s + rng.normal() * 5)),
    desirable: Int32Array.from({ length: rows }, () => (rng.next() < desirableShare ? 1 : 0)),
  };
}

function expectMetrics(got: Record<string, number>, want: Metrics): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const k of Object.keys(want)) expectScalarClose(got[k], want[k], { rtol: 1e-6, atol: 1e-9 }, k);
}

// Row 0 desirable: S = −10, ref −12 ⇒ r = 2. Row 1 undesirable: S = −15, ref −12 ⇒ r = −3.
const hand: KtoBatch = { policy: Float64Array.from([-10, -15]), ref: Float64Array.from([-12, -12]), desirable: Int32Array.from([1, 0]) };

describe("ktoLoss", () => {
  it("kto by hand: λ_D(1 − σ(β(r − z0))) and λ_U(1 − σ(β(z0 − r))), mean over rows", () => {
    scope(() => {
      // β = 0.1, z0 = 0.5: desirable 2·(1 − σ(0.1·1.5)), undesirable 0.5·(1 − σ(0.1·3.5)); mean of 2 rows.
      const r = run(hand, { beta: 0.1, kl: 0.5, desirableWeight: 2, undesirableWeight: 0.5 });
      expectScalarClose(r.loss, (2 * (1 - sigmoid(0.15)) + 0.5 * (1 - sigmoid(0.35))) / 2, { rtol: 1e-6 });
      // d/dS: −λ_D·β·σ'(0.15)/2 and +λ_U·β·σ'(0.35)/2, σ' = σ(1 − σ).
      const ds = (x: number) => sigmoid(x) * (1 - sigmoid(x));
      expectClose(floats(r.dPolicy), [(-2 * 0.1 * ds(0.15)) / 2, (0.5 * 0.1 * ds(0.35)) / 2], { rtol: 1e-6 });
      expectMetrics(r.metrics as unknown as Record<string, number>, {
        kl: 0.5,
        "rewards/chosen_sum": 0.2,
        "rewards/rejected_sum": -0.3,
        "logps/chosen_sum": -10,
        "logps/rejected_sum": -15,
        "count/chosen": 1,
        "count/rejected": 1,
        "rewards/chosen": 0.2,
        "rewards/rejected": -0.3,
        "rewards/margins": 0.5,
        "logps/chosen": -10,
        "logps/rejected": -15,
      });
    });
  });

  it("apo_zero_unpaired by hand: 1 − σ(β r) and σ(β r), the KL anchor ignored", () => {
    scope(() => {
      // (1 − σ(0.2) + σ(−0.3)) / 2
      const r = run(hand, { beta: 0.1, lossType: "apo_zero_unpaired", kl: 3 });
      expectScalarClose(r.loss, (1 - sigmoid(0.2) + sigmoid(-0.3)) / 2, { rtol: 1e-6 });
      expect(r.metrics.kl).toBe(0);
      const noKl = run(hand, { beta: 0.1, lossType: "apo_zero_unpaired" });
      expectScalarClose(noKl.loss, r.loss, { rtol: 1e-15 });
    });
  });

  for (const lossType of ["kto", "apo_zero_unpaired"] as const) {
    for (const rows of [1, 7, 64]) {
      it(`${lossType}: ${rows} rows match the float64 reference and finite differences`, () => {
        scope(() => {
          const rng = new Rng(rows * 31 + lossType.length);
          const b = randomBatch(rng, rows);
          const options = { beta: 0.2, lossType, kl: 1.7, desirableWeight: 1.33, undesirableWeight: 0.8 };
          const r = run(b, options);
          const want = refKto(b, options);
          expectScalarClose(r.loss, want.loss, { rtol: 1e-6, atol: 1e-9 }, "loss");
          expectMetrics(r.metrics as unknown as Record<string, number>, want.metrics);
          const loss = (x: Float64Array) => refKto({ ...b, policy: x }, options).loss;
          expectGradientMatches(floats(r.dPolicy), loss, Float64Array.from(b.policy), { rtol: 1e-4, atol: 1e-9 });
        });
      });
    }
  }

  it("a batch with only desirable rows logs no rejected means and no margin", () => {
    scope(() => {
      const b = randomBatch(new Rng(2), 5, 1.1);
      const r = run(b, { kl: 0.3 });
      const want = refKto(b, { beta: 0.1, lossType: "kto", kl: 0.3 });
      expectScalarClose(r.loss, want.loss, { rtol: 1e-6 });
      expectMetrics(r.metrics as unknown as Record<string, number>, want.metrics);
      expect(r.metrics["count/rejected"]).toBe(0);
      expect("rewards/rejected" in r.metrics).toBe(false);
      expect("rewards/margins" in r.metrics).toBe(false);
    });
  });

  it("clamps a negative KL estimate at 0, as TRL does", () => {
    scope(() => {
      const b = randomBatch(new Rng(3), 6);
      const negative = run(b, { kl: -2.5 });
      const zero = run(b, { kl: 0 });
      expect(negative.metrics.kl).toBe(0);
      expectScalarClose(negative.loss, zero.loss, { rtol: 1e-15 });
      expectClose(floats(negative.dPolicy), floats(zero.dPolicy), { rtol: 0, atol: 0 });
    });
  });

  describe("validation", () => {
    const b = randomBatch(new Rng(4), 3);
    const inputs = () => ({
      policyLogps: f32(b.policy),
      refLogps: f32(b.ref),
      desirable: tensor("int32", [3], [1, 0, 1]),
    });
    const cases: Array<[string, () => unknown, RegExp]> = [
      ["a missing KL anchor for kto", () => ktoLoss(inputs(), {}), /ktoLoss: 'kl' is required for lossType 'kto' \(the KL anchor z0, a number\)/],
      ["beta 0", () => ktoLoss(inputs(), { kl: 0, beta: 0 }), /'beta' must be > 0/],
      ["an unknown loss type", () => ktoLoss(inputs(), { kl: 0, lossType: "bco" as "kto" }), /'lossType' must be one of kto, apo_zero_unpaired/],
      ["a negative desirable weight", () => ktoLoss(inputs(), { kl: 0, desirableWeight: -1 }), /'desirableWeight' must be in \[0/],
      ["a negative undesirable weight", () => ktoLoss(inputs(), { kl: 0, undesirableWeight: -1 }), /'undesirableWeight' must be in \[0/],
      ["a non-finite KL", () => ktoLoss(inputs(), { kl: NaN }), /'kl' must be finite/],
      ["labels other than 0/1", () => ktoLoss({ ...inputs(), desirable: tensor("int32", [3], [1, 2, 0]) }, { kl: 0 }), /'desirable' must hold 1 \(desirable\) or 0 \(undesirable\), got 2 at \[1\]/],
      ["float labels", () => ktoLoss({ ...inputs(), desirable: f32([1, 0, 1]) }, { kl: 0 }), /'desirable' must be a int32 tensor/],
      ["mismatched shapes", () => ktoLoss({ ...inputs(), refLogps: f32([1, 2]) }, { kl: 0 }), /'refLogps' must have shape \[B\] \(B = 3/],
      ["NaN log-probs", () => ktoLoss({ ...inputs(), policyLogps: f32([-1, NaN, -1]) }, { kl: 0 }), /'policyLogps' must hold finite log-probs/],
      ["no rows", () => ktoLoss({ policyLogps: f32([]), refLogps: f32([]), desirable: tensor("int32", [0]) }, { kl: 0 }), /needs at least one row/],
      ["an unknown option", () => ktoLoss(inputs(), { kl: 0, desirable_weight: 1 } as KtoLossOptions), /unknown option 'desirable_weight'/],
    ];
    itRejects(cases);
  });

  it("leaks no native memory", () => {
        expectNoLeak(() => {
      const b = randomBatch(new Rng(5), 17);
      for (let k = 0; k < 5; ++k) run(b, { kl: 0.1 });
    });
  });
});
