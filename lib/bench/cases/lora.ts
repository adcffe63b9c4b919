/**
 * LoRA linear forward + backward (dX, dA, dB) vs the naive approach of merging the adapter into the
 * weight, W' = W + s·B·A, running a plain linear layer, and back-propagating through the merge
 * (dW' = dYᵀ·x, then dA = s·Bᵀ·dW' and dB = s·dW'·Aᵀ): same inputs, same outputs.
 */
import { tensor } from "../../native/factories";
import { lora, loraBackward } from "../../native/ops/lora";
import { matmul, matmulBackward } from "../../native/ops/matmul";
import { scope } from "../../native/tensor";
import { BenchCase, measure } from "../harness";
import { randomData } from "../random";

function loraCase(m: number, k: number, n: number, r: number, quick: boolean): BenchCase {
  const shape = `x ${m}x${k}, W ${n}x${k}, r=${r}, fwd+bwd`;
  return {
    kernel: "lora",
    shape,
    quick,
    run: (options) =>
      scope(() => {
        const scale = 2;
        const x = tensor("float32", [m, k], randomData(m * k, 1));
        const weight = tensor("float32", [n, k], randomData(n * k, 2, 0.1));
        const a = tensor("float32", [r, k], randomData(r * k, 3, 0.1));
        const b = tensor("float32", [n, r], randomData(n * r, 4, 0.1));
        const dY = tensor("float32", [m, n], randomData(m * n, 5));
        const dA = tensor("float32", [r, k]);
        const dB = tensor("float32", [n, r]);
        const ours = measure(
          () =>
            scope(() => {
              const { xa } = lora({ x, weight, a, b, scale });
              loraBackward({ x, weight, a, b, xa, scale, dY, dA, dB });
            }),
          options,
        );
        const merged = measure(
          () =>
            scope(() => {
              const w2 = weight.clone();
              matmul(b, a, { alpha: scale, out: w2, accumulate: true }); // W' = W + s·B·A  [N, K]
              matmul(x, w2, { transB: true }); // y = x·W'ᵀ  [M, N]
              const grads = matmulBackward(x, w2, dY, { transB: true }); // dX [M, K], dW' [N, K]
              matmul(b, grads.dB!, { transA: true, alpha: scale, out: dA, accumulate: true }); // Bᵀ·dW'  [r, K]
              matmul(grads.dB!, a, { transB: true, alpha: scale, out: dB, accumulate: true }); // dW'·Aᵀ  [N, r]
            }),
          options,
        );
        // Ours: forward 2MNK + 2MKr + 2MNr, backward 2MNK (dX base) + 4MNr (dB, dxa) + 4MKr (dA, dX adapter).
        const flops = 4 * m * n * k + 6 * m * n * r + 6 * m * k * r;
        return {
          kernel: "lora",
          shape,
          ours,
          work: { amount: flops / 1e9, unit: "GFLOP" as const },
          baseline: { name: "merge W+sBA", ...merged },
        };
      }),
  };
}

export const loraCases: BenchCase[] = [loraCase(2048, 1024, 1024, 16, true), loraCase(512, 4096, 4096, 64, false)];
