/**
 * Log-prob gather forward + backward (lm_head matmul, log-softmax, gather; gradients for the hidden
 * states and the lm_head) vs the naive path that materialises the [N, V] logits:
 * matmul(H, Wᵀ) → crossEntropy → crossEntropyBackward → matmulBackward, on the same inputs.
 * The naive path's peak is at least N·V·4 bytes (logits and their gradient); ours is chunk-sized.
 */
import { tensor } from "../../native/factories";
import { crossEntropy, crossEntropyBackward } from "../../native/ops/cross-entropy";
import { logprobGather, logprobGatherBackward } from "../../native/ops/logprob-gather";
import { matmul, matmulBackward } from "../../native/ops/matmul";
import { scope } from "../../native/tensor";
import { BenchCase, measure } from "../harness";
import { randomData } from "../random";

/** `ignoredFraction` of the tokens (the first ones, like a prompt) have target −100. */
function gatherCase(n: number, v: number, d: number, ignoredFraction: number, quick: boolean): BenchCase {
  const shape = `N=${n} V=${v} D=${d}${ignoredFraction ? ` ${ignoredFraction * 100}% ignored` : ""} fwd+bwd`;
  return {
    kernel: "logprobGather",
    shape,
    quick,
    run: (options) =>
      scope(() => {
        const hidden = tensor("float32", [n, d], randomData(n * d, 1, 2));
        const weight = tensor("float32", [v, d], randomData(v * d, 2, 0.2));
        const ids = Array.from({ length: n }, (_, i) => (i < n * ignoredFraction ? -100 : (i * 7919) % v));
        const targets = tensor("int32", [n], ids);
        const dWeight = tensor("float32", [v, d]);
        const ours = measure(
          () =>
            scope(() => {
              const f = logprobGather({ hidden, weight, targets });
              logprobGatherBackward({ hidden, weight, targets, lse: f.lse, dLogp: tensor("float32", [n]).fill(1), dWeight });
            }),
          options,
        );
        const naive = measure(
          () =>
            scope(() => {
              const logits = matmul(hidden, weight, { transB: true });
              const ce = crossEntropy({ logits, targets, reduction: "sum" });
              // Σ logp = −Σ nll, so dLogp = 1 is gradLoss = −1.
              const dLogits = crossEntropyBackward({ logits, targets, lse: ce.lse, count: ce.count, reduction: "sum", gradLoss: -1 });
              matmulBackward(hidden, weight, dLogits, { transB: true, dB: dWeight });
            }),
          options,
        );
        return {
          kernel: "logprobGather",
          shape,
          ours,
          // The op's own matmul work: logits, dHidden and dWeight, 2·N·V·D each (ours also recomputes
          // the logits in the backward, and skips ignored tokens).
          work: { amount: (6 * n * v * d) / 1e9, unit: "GFLOP" as const },
          baseline: { name: "materialised logits", ...naive },
        };
      }),
  };
}

export const logprobGatherCases: BenchCase[] = [
  gatherCase(512, 32000, 256, 0, true),
  gatherCase(16, 128256, 256, 0, true),
  gatherCase(2048, 32000, 512, 0.5, false),
];
