/**
 * The preference and RL losses vs a straightforward TypeScript implementation of the same math
 * (float64 arithmetic over the same float32 inputs, read from typed arrays). Throughput is the
 * bytes of inputs read per second.
 */
import { tensor } from "../../native/factories";
import { dpoLoss, grpoLoss } from "../../native/ops/losses";
import { scope } from "../../native/tensor";
import { BenchCase, measure } from "../harness";
import { randomUniform } from "../random";

const logSigmoid = (x: number): number => (x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x)));

/** DPO sigmoid loss, its gradients and TRL's metrics, the obvious way. */
function dpoSigmoidTs(
  pc: Float32Array, pr: Float32Array, rc: Float32Array, rr: Float32Array, beta: number,
  dChosen: Float32Array, dRejected: Float32Array,
): { loss: number; metrics: Record<string, number> } {
  const P = pc.length;
  let loss = 0;
  let chosen = 0;
  let rejected = 0;
  let accuracies = 0;
  let logpsChosen = 0;
  let logpsRejected = 0;
  for (let i = 0; i < P; ++i) {
    const uc = pc[i] - rc[i];
    const ur = pr[i] - rr[i];
    const h = beta * (uc - ur);
    loss -= logSigmoid(h) / P;
    const g = (-beta / (1 + Math.exp(h))) / P; // −β·σ(−h)/P
    dChosen[i] = g;
    dRejected[i] = -g;
    chosen += beta * uc;
    rejected += beta * ur;
    accuracies += beta * uc > beta * ur ? 1 : 0;
    logpsChosen += pc[i];
    logpsRejected += pr[i];
  }
  return {
    loss,
    metrics: {
      "rewards/chosen": chosen / P,
      "rewards/rejected": rejected / P,
      "rewards/accuracies": accuracies / P,
      "rewards/margins": (chosen - rejected) / P,
      "logps/chosen": logpsChosen / P,
      "logps/rejected": logpsRejected / P,
    },
  };
}

function dpoCase(pairs: number): BenchCase {
  const shape = `${pairs} pairs, sigmoid`;
  return {
    kernel: "dpoLoss",
    shape,
    quick: true,
    run: (options) =>
      scope(() => {
        const data = [0, 1, 2, 3].map((k) => randomUniform(pairs, k + 1, -200, -20));
        const [policyChosen, policyRejected, refChosen, refRejected] = data.map((d) => tensor("float32", [pairs], d));
        const ours = measure(() => dpoLoss({ policyChosen, policyRejected, refChosen, refRejected }), options);
        const dChosen = new Float32Array(pairs);
        const dRejected = new Float32Array(pairs);
        const baseline = measure(
          () => dpoSigmoidTs(data[0], data[1], data[2], data[3], 0.1, dChosen, dRejected),
          options,
        );
        return {
          kernel: "dpoLoss",
          shape,
          ours,
          work: { amount: (4 * pairs * 4) / 1e9, unit: "GB" as const },
          baseline: { name: "TypeScript", ...baseline },
        };
      }),
  };
}

/** GRPO, token level, dapo, β·k3 KL: loss, dLogp and the clip metrics, the obvious way. */
function grpoDapoTs(
  rows: number, seq: number, logp: Float32Array, old: Float32Array, ref: Float32Array, adv: Float32Array,
  mask: Float32Array, eps: number, epsHigh: number, beta: number, normaliser: number, dLogp: Float32Array,
): { loss: number; metrics: Record<string, number> } {
  let loss = 0;
  let kl = 0;
  let tokens = 0;
  let low = 0;
  let high = 0;
  let lowMin = NaN;
  let highMax = NaN;
  for (let i = 0; i < rows; ++i) {
    const A = adv[i];
    let rowTokens = 0;
    let rowLow = 0;
    let rowHigh = 0;
    for (let t = 0; t < seq; ++t) {
      const k = i * seq + t;
      if (mask[k] === 0) {
        dLogp[k] = 0;
        continue;
      }
      const rho = Math.exp(logp[k] - old[k]);
      const clipped = Math.min(Math.max(rho, 1 - eps), 1 + epsHigh);
      const unclippedWins = rho * A <= clipped * A;
      const d = ref[k] - logp[k];
      const ed = Math.exp(d);
      loss += -Math.min(rho * A, clipped * A) + beta * (ed - d - 1);
      kl += ed - d - 1;
      const surrogateGrad = unclippedWins || (rho >= 1 - eps && rho <= 1 + epsHigh) ? -A * rho : 0;
      dLogp[k] = (surrogateGrad + beta * (1 - ed)) / normaliser;
      rowTokens += 1;
      if (rho < 1 - eps && A < 0) rowLow += 1;
      if (rho > 1 + epsHigh && A > 0) rowHigh += 1;
    }
    tokens += rowTokens;
    low += rowLow;
    high += rowHigh;
    if (rowTokens > 0) {
      lowMin = Number.isNaN(lowMin) ? rowLow / rowTokens : Math.min(lowMin, rowLow / rowTokens);
      highMax = Number.isNaN(highMax) ? rowHigh / rowTokens : Math.max(highMax, rowHigh / rowTokens);
    }
  }
  const count = Math.max(tokens, 1);
  return {
    loss: loss / normaliser,
    metrics: {
      kl: kl / count,
      "clip_ratio/low_mean": low / count,
      "clip_ratio/high_mean": high / count,
      "clip_ratio/region_mean": (low + high) / count,
      "clip_ratio/low_min": lowMin,
      "clip_ratio/high_max": highMax,
    },
  };
}

function grpoCase(rows: number, seq: number): BenchCase {
  const shape = `[${rows}, ${seq}] dapo, β = 0.04`;
  return {
    kernel: "grpoLoss",
    shape,
    quick: true,
    run: (options) =>
      scope(() => {
        const n = rows * seq;
        const logpData = randomUniform(n, 1, -5, -0.01);
        const noise = randomUniform(n, 2, -0.3, 0.3);
        const oldData = logpData.map((v, k) => v + noise[k]);
        const refData = logpData.map((v, k) => v - noise[(k * 7) % n]);
        const advData = randomUniform(rows, 3, -1.5, 1.5);
        // Right padding: row i keeps its first seq − (i·37 mod seq/2) tokens.
        const maskData = new Float32Array(n);
        for (let i = 0; i < rows; ++i) maskData.fill(1, i * seq, i * seq + seq - ((i * 37) % (seq >> 1)));
        let tokens = 0;
        for (const m of maskData) tokens += m;
        const bt = (d: Float32Array) => tensor("float32", [rows, seq], d);
        const inputs = {
          logp: bt(logpData),
          oldLogp: bt(oldData),
          refLogp: bt(refData),
          advantages: tensor("float32", [rows], advData),
          mask: bt(maskData),
        };
        const ours = measure(
          () => grpoLoss(inputs, { beta: 0.04, epsilonHigh: 0.28, numItemsInBatch: tokens }),
          options,
        );
        const dLogp = new Float32Array(n);
        const baseline = measure(
          () => grpoDapoTs(rows, seq, logpData, oldData, refData, advData, maskData, 0.2, 0.28, 0.04, tokens, dLogp),
          options,
        );
        return {
          kernel: "grpoLoss",
          shape,
          ours,
          work: { amount: (4 * n * 4 + rows * 4) / 1e9, unit: "GB" as const },
          baseline: { name: "TypeScript", ...baseline },
        };
      }),
  };
}

export const lossCases: BenchCase[] = [dpoCase(64), grpoCase(64, 1024)];
