/** RMSNorm forward and backward vs naive single-threaded C++ loops (float32 accumulation). */
import { tensor } from "../../native/factories";
import { rmsNorm, rmsNormBackward, rmsNormBackwardNaive, rmsNormNaive } from "../../native/ops/rmsnorm";
import { scope } from "../../native/tensor";
import { BenchCase, measure } from "../harness";
import { randomData } from "../random";

function forwardAndBackward(rows: number, dim: number, quick: boolean): BenchCase[] {
  const setup = () => ({
    x: tensor("float32", [rows, dim], randomData(rows * dim, 1)),
    w: tensor("float32", [dim], randomData(dim, 2)),
    dY: tensor("float32", [rows, dim], randomData(rows * dim, 3)),
    dX: tensor("float32", [rows, dim]),
    dWeight: tensor("float32", [dim]),
  });
  const bytes = (arrays: number) => (arrays * rows * dim * 4) / 1e9;
  return [
    {
      kernel: "rmsNorm",
      shape: `${rows}x${dim} forward`,
      quick,
      run: (options) =>
        scope(() => {
          const { x, w } = setup();
          const ours = measure(() => scope(() => void rmsNorm(x, w, { eps: 1e-5 })), options);
          const naive = measure(() => scope(() => void rmsNormNaive(x, w, { eps: 1e-5 })), options);
          // Reads x, writes y.
          return {
            kernel: "rmsNorm", shape: `${rows}x${dim} forward`, ours,
            work: { amount: bytes(2), unit: "GB" as const }, baseline: { name: "naive loop", ...naive },
          };
        }),
    },
    {
      kernel: "rmsNorm",
      shape: `${rows}x${dim} backward`,
      quick,
      run: (options) =>
        scope(() => {
          const { x, w, dY, dX, dWeight } = setup();
          const { rstd } = rmsNorm(x, w, { eps: 1e-5 });
          const ours = measure(() => scope(() => void rmsNormBackward(dY, x, w, rstd, { dX, dWeight })), options);
          const naive = measure(
            () => scope(() => void rmsNormBackwardNaive(dY, x, w, rstd, { dX, dWeight })),
            options,
          );
          // Reads dY and x, writes dX.
          return {
            kernel: "rmsNorm", shape: `${rows}x${dim} backward`, ours,
            work: { amount: bytes(3), unit: "GB" as const }, baseline: { name: "naive loop", ...naive },
          };
        }),
    },
  ];
}

export const rmsNormCases: BenchCase[] = [...forwardAndBackward(2048, 2048, true), ...forwardAndBackward(8192, 128, false)];
