/**
 * Independent float64 references of TRL's preference and RL losses, written from the formulas in
 * shared/reference/trl-losses.md the way TRL's PyTorch code computes them (elementwise tensors,
 * then means), not the way the kernels do. Used for the forward values and, through central
 * differences, for the gradients.
 */

export const logSigmoid = (x: number): number => (x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x)));
export const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));
const mean = (xs: ArrayLike<number>): number => Array.from(xs).reduce((a, b) => a + b, 0) / xs.length;

export interface PairBatch {
  policyChosen: Float64Array;
  policyRejected: Float64Array;
  refChosen: Float64Array;
  refRejected: Float64Array;
  chosenLengths: Float64Array;
  rejectedLengths: Float64Array;
  pairWeights?: Float64Array;
}

export interface DpoRefOptions {
  beta: number;
  lossTypes: string[];
  lossWeights?: number[];
  labelSmoothing?: number;
  fDivergenceType?: string;
  fAlphaDivergenceCoef?: number;
  discopopTau?: number;
}

export interface Metrics {
  [name: string]: number;
}

/** DPO (TRL main `_compute_loss`, without the model parts). */
export function refDpo(b: PairBatch, o: DpoRefOptions): { loss: number; metrics: Metrics } {
  const P = b.policyChosen.length;
  const beta = o.beta;
  const eps = o.labelSmoothing ?? 0;
  const f = o.fDivergenceType ?? "reverse_kl";
  const alpha = o.fAlphaDivergenceCoef ?? 0.5;
  const tau = o.discopopTau ?? 0.05;
  const uc = Array.from({ length: P }, (_, i) => b.policyChosen[i] - b.refChosen[i]);
  const ur = Array.from({ length: P }, (_, i) => b.policyRejected[i] - b.refRejected[i]);
  const score = (u: number): number => {
    if (f === "forward_kl") return -Math.exp(-u);
    if (f === "js_divergence") return logSigmoid(u);
    if (f === "alpha_divergence") {
      if (Math.abs(alpha - 1) < 1e-6) return u;
      return Math.exp(Math.min((alpha - 1) * u, 80)) / (alpha - 1);
    }
    return u;
  };
  const sc = uc.map(score);
  const sr = ur.map(score);
  const ds = sc.map((v, i) => v - sr[i]);
  const nc = Array.from(b.chosenLengths, (n) => Math.max(n, 1));
  const nr = Array.from(b.rejectedLengths, (n) => Math.max(n, 1));
  let loss = 0;
  o.lossTypes.forEach((type, k) => {
    const perPair = ds.map((d, i) => {
      const h = beta * d;
      switch (type) {
        case "sigmoid":
          return -logSigmoid(h);
        case "hinge":
          return Math.max(0, 1 - h);
        case "ipo":
          return (sc[i] / nc[i] - sr[i] / nr[i] - 1 / (2 * beta)) ** 2;
        case "exo_pair":
          return sigmoid(h) * (logSigmoid(h) - Math.log1p(-eps)) + sigmoid(-h) * (logSigmoid(-h) - Math.log(eps));
        case "nca_pair":
          return -logSigmoid(beta * sc[i]) - 0.5 * logSigmoid(-beta * sc[i]) - 0.5 * logSigmoid(-beta * sr[i]);
        case "robust": {
          const clean = -(1 - eps) * logSigmoid(h);
          const flipped = -eps * logSigmoid(-h);
          return (clean - flipped) / (1 - 2 * eps);
        }
        case "bco_pair":
          return -logSigmoid(beta * sc[i]) - logSigmoid(-beta * sr[i]);
        case "sppo_hard":
          return (sc[i] - 0.5 / beta) ** 2 + (sr[i] + 0.5 / beta) ** 2;
        case "apo_zero":
          return 1 - sigmoid(beta * uc[i]) + sigmoid(beta * ur[i]);
        case "apo_down":
          return sigmoid(beta * uc[i]) + 1 - sigmoid(h);
        case "discopop": {
          const w = sigmoid(h / tau);
          return -logSigmoid(h) * (1 - w) + Math.exp(-h) * w;
        }
        case "sft": {
          let s = 0;
          let n = 0;
          for (let j = 0; j < P; ++j) {
            s += b.policyChosen[j];
            n += b.chosenLengths[j];
          }
          return -s / Math.max(n, 1);
        }
        case "sigmoid_norm":
          return -logSigmoid(beta * (sc[i] / nc[i] - sr[i] / nr[i]));
        default:
          throw new Error(`unknown loss type ${type}`);
      }
    });
    const weighted = perPair.map((l, i) => l * (b.pairWeights ? b.pairWeights[i] : 1));
    loss += mean(weighted) * (o.lossWeights ? o.lossWeights[k] : 1);
  });
  const rc = uc.map((u) => beta * u);
  const rr = ur.map((u) => beta * u);
  return {
    loss,
    metrics: {
      "rewards/chosen": mean(rc),
      "rewards/rejected": mean(rr),
      "rewards/accuracies": mean(rc.map((r, i) => (r > rr[i] ? 1 : 0))),
      "rewards/margins": mean(rc.map((r, i) => r - rr[i])),
      "logps/chosen": mean(b.policyChosen),
      "logps/rejected": mean(b.policyRejected),
    },
  };
}

export interface KtoBatch {
  policy: Float64Array;
  ref: Float64Array;
  desirable: Int32Array;
}

/** KTO: the concatenation [desirable losses; undesirable losses], then its mean. */
export function refKto(
  b: KtoBatch,
  o: { beta: number; lossType: string; kl: number; desirableWeight?: number; undesirableWeight?: number },
): { loss: number; metrics: Metrics } {
  const z0 = o.lossType === "kto" ? Math.max(o.kl, 0) : 0;
  const chosen: number[] = [];
  const rejected: number[] = [];
  const metrics: Metrics = { kl: z0 };
  let rcSum = 0;
  let rrSum = 0;
  let lcSum = 0;
  let lrSum = 0;
  b.policy.forEach((s, i) => {
    const r = s - b.ref[i];
    if (b.desirable[i]) {
      chosen.push((o.desirableWeight ?? 1) * (1 - sigmoid(o.beta * (r - z0))));
      rcSum += o.beta * r;
      lcSum += s;
    } else {
      const l = o.lossType === "kto" ? 1 - sigmoid(o.beta * (z0 - r)) : sigmoid(o.beta * r);
      rejected.push((o.undesirableWeight ?? 1) * l);
      rrSum += o.beta * r;
      lrSum += s;
    }
  });
  Object.assign(metrics, {
    "rewards/chosen_sum": rcSum,
    "rewards/rejected_sum": rrSum,
    "logps/chosen_sum": lcSum,
    "logps/rejected_sum": lrSum,
    "count/chosen": chosen.length,
    "count/rejected": rejected.length,
  });
  if (chosen.length) {
    metrics["rewards/chosen"] = rcSum / chosen.length;
    metrics["logps/chosen"] = lcSum / chosen.length;
  }
  if (rejected.length) {
    metrics["rewards/rejected"] = rrSum / rejected.length;
    metrics["logps/rejected"] = lrSum / rejected.length;
  }
  if (chosen.length && rejected.length) {
    metrics["rewards/margins"] = rcSum / chosen.length - rrSum / rejected.length;
  }
  return { loss: mean([...chosen, ...rejected]), metrics };
}

const average = (sums: Float64Array, counts: Float64Array): number[] =>
  Array.from(sums, (s, i) => s / Math.max(counts[i], 1));

function pairMetrics(beta: number, a: number[], b: number[]): Metrics {
  const rc = a.map((x) => beta * x);
  const rr = b.map((x) => beta * x);
  return {
    "rewards/chosen": mean(rc),
    "rewards/rejected": mean(rr),
    "rewards/accuracies": mean(rc.map((r, i) => (r > rr[i] ? 1 : 0))),
    "rewards/margins": mean(rc.map((r, i) => r - rr[i])),
    "logps/chosen": mean(a),
    "logps/rejected": mean(b),
  };
}

/** ORPO: log-odds from average log-probs, log(1 − e^x) written as log(−expm1(x)). */
export function refOrpo(b: PairBatch, o: { beta: number; nll: number }): { loss: number; metrics: Metrics } {
  const a = average(b.policyChosen, b.chosenLengths);
  const r = average(b.policyRejected, b.rejectedLengths);
  const logOdds = a.map((x, i) => x - r[i] - (Math.log(-Math.expm1(x)) - Math.log(-Math.expm1(r[i]))));
  const ratio = logOdds.map(logSigmoid);
  return {
    loss: o.nll - mean(ratio.map((x) => o.beta * x)),
    metrics: {
      ...pairMetrics(o.beta, a, r),
      nll_loss: o.nll,
      log_odds_ratio: mean(ratio),
      log_odds_chosen: mean(logOdds),
    },
  };
}

/** CPO / SimPO / AlphaPO, with the AlphaPO reward written as (1 − p^−α)/α, p = e^x. */
export function refCpo(
  b: PairBatch,
  o: { beta: number; lossType: string; labelSmoothing?: number; simpoGamma?: number; alpha?: number; cpoAlpha?: number; nll?: number },
): { loss: number; metrics: Metrics } {
  const averaged = o.lossType === "ipo" || o.lossType === "simpo";
  const x = averaged ? average(b.policyChosen, b.chosenLengths) : Array.from(b.policyChosen);
  const y = averaged ? average(b.policyRejected, b.rejectedLengths) : Array.from(b.policyRejected);
  const alpha = o.alpha ?? 0;
  const reward = (v: number): number => (alpha !== 0 ? (1 - Math.pow(Math.exp(v), -alpha)) / alpha : v);
  const rc = x.map(reward);
  const rr = y.map(reward);
  const eps = o.labelSmoothing ?? 0;
  const losses = rc.map((c, i) => {
    let logits = c - rr[i];
    switch (o.lossType) {
      case "simpo":
        logits -= (o.simpoGamma ?? 0.5) / o.beta;
        return -logSigmoid(o.beta * logits) * (1 - eps) - logSigmoid(-o.beta * logits) * eps;
      case "sigmoid":
        return -logSigmoid(o.beta * logits) * (1 - eps) - logSigmoid(-o.beta * logits) * eps;
      case "hinge":
        return Math.max(0, 1 - o.beta * logits);
      case "ipo":
        return (logits - 1 / (2 * o.beta)) ** 2;
      default:
        throw new Error(`unknown loss type ${o.lossType}`);
    }
  });
  const cpoAlpha = o.cpoAlpha ?? 1;
  const nll = cpoAlpha === 0 ? 0 : (o.nll ?? 0);
  const metrics = pairMetrics(o.beta, rc, rr);
  metrics["logps/chosen"] = mean(x);
  metrics["logps/rejected"] = mean(y);
  metrics.nll_loss = nll;
  return { loss: mean(losses) + cpoAlpha * nll, metrics };
}

export interface GrpoBatch {
  rows: number;
  seq: number;
  logp: Float64Array;
  oldLogp?: Float64Array;
  refLogp?: Float64Array;
  advantages: Float64Array;
  mask: Float64Array;
}

export interface GrpoRefOptions {
  beta?: number;
  epsilon?: number;
  epsilonHigh?: number;
  delta?: number;
  lossType?: string;
  importanceSamplingLevel?: string;
  maxCompletionLength?: number;
  numItemsInBatch?: number;
  numProcesses?: number;
  gradientAccumulationSteps?: number;
}

/** GRPO as TRL's `_compute_loss` does it: [B, T] (or [B, 1]) tensors, masks, then the normaliser. */
export function refGrpo(b: GrpoBatch, o: GrpoRefOptions): { loss: number; metrics: Metrics } {
  const { rows: B, seq: T } = b;
  const beta = o.beta ?? 0;
  const epsLow = o.epsilon ?? 0.2;
  const epsHigh = o.epsilonHigh ?? epsLow;
  const ga = o.gradientAccumulationSteps ?? 1;
  const old = b.oldLogp ?? b.logp;
  const sequence = o.importanceSamplingLevel === "sequence";
  const at = (x: ArrayLike<number>, i: number, t: number): number => x[i * T + t];
  const rowMask = (i: number): number => {
    let s = 0;
    for (let t = 0; t < T; ++t) s += at(b.mask, i, t);
    return s;
  };
  // coef_1 = exp(log importance weight): per token, or per row at sequence level (GSPO).
  const logWeight = Array.from({ length: B }, (_, i) => {
    let s = 0;
    for (let u = 0; u < T; ++u) s += (at(b.logp, i, u) - at(old, i, u)) * at(b.mask, i, u);
    return s / Math.max(rowMask(i), 1);
  });
  const coef1 = (i: number, t: number): number =>
    Math.exp(sequence ? logWeight[i] : at(b.logp, i, t) - at(old, i, t));
  const perTokenKl = (i: number, t: number): number => {
    const d = at(b.refLogp!, i, t) - at(b.logp, i, t);
    return Math.exp(d) - d - 1;
  };
  const ptl = new Float64Array(B * T);
  const low = new Float64Array(B * T);
  const high = new Float64Array(B * T);
  for (let i = 0; i < B; ++i) {
    const A = b.advantages[i];
    for (let t = 0; t < T; ++t) {
      let c1 = coef1(i, t);
      const c2 = Math.min(Math.max(c1, 1 - epsLow), 1 + epsHigh);
      if (o.delta !== undefined) c1 = Math.min(c1, o.delta);
      let l = -Math.min(c1 * A, c2 * A);
      if (beta !== 0) l += beta * perTokenKl(i, t);
      ptl[i * T + t] = l;
      low[i * T + t] = c1 < 1 - epsLow && A < 0 ? 1 : 0;
      high[i * T + t] = c1 > 1 + epsHigh && A > 0 ? 1 : 0;
    }
  }
  let masked = 0;
  let total = 0;
  for (let k = 0; k < B * T; ++k) {
    masked += ptl[k] * b.mask[k];
    total += b.mask[k];
  }
  let loss: number;
  switch (o.lossType ?? "dapo") {
    case "grpo": {
      let s = 0;
      for (let i = 0; i < B; ++i) {
        let row = 0;
        for (let t = 0; t < T; ++t) row += at(ptl, i, t) * at(b.mask, i, t);
        s += row / Math.max(rowMask(i), 1);
      }
      loss = s / B / ga;
      break;
    }
    case "bnpo":
      loss = masked / Math.max(total, 1) / ga;
      break;
    case "dr_grpo":
      loss = masked / (B * o.maxCompletionLength!) / ga;
      break;
    default:
      loss = masked / (Math.max(o.numItemsInBatch!, 1) / (o.numProcesses ?? 1));
  }
  // Metrics: global masked means; at sequence level the flags are one per row ([B, 1] tensors).
  const globalMean = (x: Float64Array): number => {
    if (sequence) {
      let s = 0;
      for (let i = 0; i < B; ++i) s += x[i * T];
      return s / B;
    }
    let s = 0;
    for (let k = 0; k < B * T; ++k) s += x[k] * b.mask[k];
    return s / Math.max(total, 1);
  };
  const seqMeans = (x: Float64Array): number[] =>
    Array.from({ length: B }, (_, i) => {
      if (sequence) return x[i * T];
      let s = 0;
      for (let t = 0; t < T; ++t) s += at(x, i, t) * at(b.mask, i, t);
      return s / rowMask(i);
    });
  const region = low.map((v, k) => (v || high[k] ? 1 : 0));
  const lowSeq = seqMeans(low).filter((v) => !Number.isNaN(v));
  const highSeq = seqMeans(high).filter((v) => !Number.isNaN(v));
  const metrics: Metrics = {
    "clip_ratio/low_mean": globalMean(low),
    "clip_ratio/high_mean": globalMean(high),
    "clip_ratio/region_mean": globalMean(region),
    "clip_ratio/low_min": lowSeq.length ? Math.min(...lowSeq) : NaN,
    "clip_ratio/high_max": highSeq.length ? Math.max(...highSeq) : NaN,
  };
  if (beta !== 0) {
    let s = 0;
    for (let i = 0; i < B; ++i) for (let t = 0; t < T; ++t) s += perTokenKl(i, t) * at(b.mask, i, t);
    metrics.kl = s / Math.max(total, 1);
  }
  return { loss, metrics };
}
