/**
 * matmul vs the textbook triple loop, on the shapes the trainer runs: C = A·Bᵀ (the layout of every
 * linear layer) for square products, token chunks x vocabulary, LoRA's skinny products and
 * attention scores; C = A·B for attention's probabilities x values.
 */
import { tensor } from "../../native/factories";
import { matmul, matmulNaive } from "../../native/ops/matmul";
import { scope } from "../../native/tensor";
import { BenchCase, measure } from "../harness";
import { randomData } from "../random";

function matmulCase(m: number, n: number, k: number, quick: boolean, transB = true): BenchCase {
  const shape = `${m}x${n}x${k} ${transB ? "A·Bᵀ" : "A·B"}`;
  return {
    kernel: "matmul",
    shape,
    quick,
    run: (options) =>
      scope(() => {
        const a = tensor("float32", [m, k], randomData(m * k, 1));
        const b = tensor("float32", transB ? [n, k] : [k, n], randomData(n * k, 2));
        const out = tensor("float32", [m, n]);
        const ours = measure(() => matmul(a, b, { transB, out }), options);
        const naive = measure(() => matmulNaive(a, b, { transB, out }), options);
        return {
          kernel: "matmul",
          shape,
          ours,
          work: { amount: (2 * m * n * k) / 1e9, unit: "GFLOP" as const },
          baseline: { name: "triple loop", ...naive },
        };
      }),
  };
}

export const matmulCases: BenchCase[] = [
  matmulCase(256, 256, 256, true),
  matmulCase(1024, 1024, 1024, true),
  matmulCase(512, 2048, 512, false), // MLP-sized
  matmulCase(64, 8192, 512, false), // a token chunk x vocabulary (log-prob gathering)
  matmulCase(4096, 16, 2048, false), // LoRA down-projection x·Aᵀ, rank 16
  matmulCase(4096, 2048, 16, false), // LoRA up-projection (x·Aᵀ)·Bᵀ, rank 16
  matmulCase(64, 512, 64, false), // attention scores Q·Kᵀ for a 64-query block
  matmulCase(64, 64, 512, false, false), // attention probabilities x values P·V
];
