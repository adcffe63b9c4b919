/**
 * Causal GQA attention, forward and backward, vs the row-by-row single-threaded loops (the same
 * inputs). Work: the causal half of the score matrix, 2 matmul-like products of 2·D flops per
 * visible (query, key) pair forward and 4 backward (QKᵀ, PV; dO·Vᵀ, dS·K, dSᵀ·Q, Pᵀ·dO).
 */
import { tensor } from "../../native/factories";
import { attention, attentionBackward, attentionBackwardNaive, attentionNaive } from "../../native/ops/attention";
import { scope } from "../../native/tensor";
import { BenchCase, measure } from "../harness";
import { randomData } from "../random";

interface AttentionShape {
  B: number;
  T: number;
  Hq: number;
  Hkv: number;
  D: number;
}

function describe({ B, T, Hq, Hkv, D }: AttentionShape): string {
  return `B=${B} T=${T} Hq=${Hq} Hkv=${Hkv} D=${D} causal`;
}

/** Visible (query, key) pairs of causal self-attention, over every batch row and query head. */
function visiblePairs({ B, T, Hq }: AttentionShape): number {
  return B * Hq * ((T * (T + 1)) / 2);
}

function inputs(s: AttentionShape) {
  return {
    q: tensor("float32", [s.B, s.T, s.Hq, s.D], randomData(s.B * s.T * s.Hq * s.D, 1)),
    k: tensor("float32", [s.B, s.T, s.Hkv, s.D], randomData(s.B * s.T * s.Hkv * s.D, 2)),
    v: tensor("float32", [s.B, s.T, s.Hkv, s.D], randomData(s.B * s.T * s.Hkv * s.D, 3)),
  };
}

function forwardCase(s: AttentionShape, quick: boolean): BenchCase {
  const shape = describe(s);
  return {
    kernel: "attention",
    shape,
    quick,
    run: (options) =>
      scope(() => {
        const x = inputs(s);
        const ours = measure(() => scope(() => void attention(x)), options);
        const naive = measure(() => scope(() => void attentionNaive(x)), options);
        return {
          kernel: "attention",
          shape,
          ours,
          work: { amount: (4 * s.D * visiblePairs(s)) / 1e9, unit: "GFLOP" as const },
          baseline: { name: "row loops", ...naive },
        };
      }),
  };
}

function backwardCase(s: AttentionShape, quick: boolean): BenchCase {
  const shape = describe(s);
  return {
    kernel: "attentionBackward",
    shape,
    quick,
    run: (options) =>
      scope(() => {
        const x = inputs(s);
        const { out, lse } = attention(x);
        const args = { ...x, out, lse, dOut: tensor("float32", out.shape, randomData(out.numel, 4)) };
        const ours = measure(() => scope(() => void attentionBackward(args)), options);
        const naive = measure(() => scope(() => void attentionBackwardNaive(args)), options);
        return {
          kernel: "attentionBackward",
          shape,
          ours,
          work: { amount: (8 * s.D * visiblePairs(s)) / 1e9, unit: "GFLOP" as const },
          baseline: { name: "row loops", ...naive },
        };
      }),
  };
}

const quickShape = { B: 1, T: 512, Hq: 8, Hkv: 2, D: 64 };
const longShape = { B: 1, T: 2048, Hq: 8, Hkv: 2, D: 64 };

export const attentionCases: BenchCase[] = [
  forwardCase(quickShape, true),
  backwardCase(quickShape, true),
  forwardCase(longShape, false),
  backwardCase(longShape, false),
];
