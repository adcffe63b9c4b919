/** AdamW step vs the same formula as a plain TypeScript loop over Float32Arrays, in GB/s moved. */
import { tensor } from "../../native/factories";
import { adamw } from "../../native/ops/adamw";
import { scope } from "../../native/tensor";
import { BenchCase, measure } from "../harness";
import { randomData } from "../random";

const hyper = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };

/** One torch.optim.AdamW step over plain arrays (the baseline). */
function adamwLoop(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, step: number): void {
  const { lr, beta1, beta2, eps, weightDecay } = hyper;
  const stepSize = lr / (1 - beta1 ** step);
  const bc2Sqrt = Math.sqrt(1 - beta2 ** step);
  const decay = 1 - lr * weightDecay;
  for (let i = 0; i < p.length; ++i) {
    const gi = g[i];
    m[i] = beta1 * m[i] + (1 - beta1) * gi;
    v[i] = beta2 * v[i] + (1 - beta2) * gi * gi;
    p[i] = p[i] * decay - (stepSize * m[i]) / (Math.sqrt(v[i]) / bc2Sqrt + eps);
  }
}

function adamwCase(count: number, quick: boolean): BenchCase {
  const shape = `${(count / 1e6).toFixed(1)}M params`;
  return {
    kernel: "adamw",
    shape,
    quick,
    run: (options) =>
      scope(() => {
        const p0 = randomData(count, 1);
        const g0 = randomData(count, 2);
        const params = [tensor("float32", [count], p0)];
        const grads = [tensor("float32", [count], g0)];
        const m = [tensor("float32", [count])];
        const v = [tensor("float32", [count])];
        let step = 0;
        const ours = measure(() => adamw({ params, grads, m, v, ...hyper, step: ++step }), options);
        const arrays = { p: Float32Array.from(p0), g: g0, m: new Float32Array(count), v: new Float32Array(count) };
        let loopStep = 0;
        const loop = measure(() => adamwLoop(arrays.p, arrays.g, arrays.m, arrays.v, ++loopStep), options);
        // Reads p, g, m, v and writes p, m, v: 7 float32 per element.
        return {
          kernel: "adamw", shape, ours,
          work: { amount: (7 * 4 * count) / 1e9, unit: "GB" as const }, baseline: { name: "TS loop", ...loop },
        };
      }),
  };
}

export const adamwCases: BenchCase[] = [adamwCase(4 * 1024 * 1024, true), adamwCase(64 * 1024, false)];
