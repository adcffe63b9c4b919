/** matmul (C = A·Bᵀ, the layout of every linear layer) vs the textbook triple loop. */
import { tensor } from "../../native/factories";
import { matmul, matmulNaive } from "../../native/ops/matmul";
import { scope } from "../../native/tensor";
import { BenchCase, measure } from "../harness";

function randomData(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; ++i) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 4294967296 - 0.5;
  }
  return out;
}

function matmulCase(m: number, n: number, k: number, quick: boolean): BenchCase {
  return {
    kernel: "matmul",
    shape: `${m}x${n}x${k} A·Bᵀ`,
    quick,
    run: (options) =>
      scope(() => {
        const a = tensor("float32", [m, k], randomData(m * k, 1));
        const b = tensor("float32", [n, k], randomData(n * k, 2));
        const out = tensor("float32", [m, n]);
        const ours = measure(() => matmul(a, b, { transB: true, out }), options);
        const naive = measure(() => matmulNaive(a, b, { transB: true, out }), options);
        return {
          kernel: "matmul",
          shape: `${m}x${n}x${k} A·Bᵀ`,
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
  matmulCase(512, 2048, 512, false),
  matmulCase(7, 259, 3, false),
];
