/**
 * RoPE (q or k rotation, [B, T, H, D]) vs a single-threaded loop that recomputes theta^(2j/D) with
 * powf for every element. Work: the bytes read and written (x in, out out).
 */
import { tensor } from "../../native/factories";
import { rope, ropeFrequencies, ropeNaive } from "../../native/ops/rope";
import { scope } from "../../native/tensor";
import { BenchCase, measure } from "../harness";

function ropeCase(B: number, T: number, H: number, D: number, quick: boolean): BenchCase {
  const shape = `B=${B} T=${T} H=${H} D=${D}`;
  return {
    kernel: "rope",
    shape,
    quick,
    run: (options) =>
      scope(() => {
        const n = B * T * H * D;
        const data = new Float32Array(n);
        for (let i = 0; i < n; ++i) data[i] = Math.sin(i);
        const x = tensor("float32", [B, T, H, D], data);
        const positions = tensor("int32", [B, T], Array.from({ length: B * T }, (_, i) => i % T));
        const theta = 500000;
        const invFreq = ropeFrequencies({ headDim: D, theta });
        const ours = measure(() => scope(() => void rope({ x, positions, invFreq })), options);
        const naive = measure(() => scope(() => void ropeNaive({ x, positions, theta })), options);
        return {
          kernel: "rope",
          shape,
          ours,
          work: { amount: (2 * n * 4) / 1e9, unit: "GB" as const },
          baseline: { name: "powf per element", ...naive },
        };
      }),
  };
}

export const ropeCases: BenchCase[] = [ropeCase(1, 512, 32, 128, true), ropeCase(2, 2048, 32, 128, false)];
