/** Every benchmark case, and running a selection of them. */
import { BenchCase, BenchOptions, BenchResult } from "./harness";
import { adamwCases } from "./cases/adamw";
import { attentionCases } from "./cases/attention";
import { embeddingCases } from "./cases/embedding";
import { logprobGatherCases } from "./cases/logprob-gather";
import { loraCases } from "./cases/lora";
import { lossCases } from "./cases/losses";
import { matmulCases } from "./cases/matmul";
import { rmsNormCases } from "./cases/rmsnorm";
import { ropeCases } from "./cases/rope";

export const allCases: BenchCase[] = [
  ...matmulCases,
  ...loraCases,
  ...rmsNormCases,
  ...embeddingCases,
  ...adamwCases,
  ...attentionCases,
  ...ropeCases,
  ...logprobGatherCases,
  ...lossCases,
];

export interface RunBenchOptions extends BenchOptions {
  /** Run every case, not only the quick set. */
  all: boolean;
  /** Only cases whose kernel name contains this string. */
  filter?: string;
  onResult?: (r: BenchResult) => void;
}

export function runBenchmarks(options: RunBenchOptions): BenchResult[] {
  const selected = allCases.filter(
    (c) => (options.all || c.quick) && (!options.filter || c.kernel.includes(options.filter)),
  );
  return selected.map((c) => {
    const r = c.run(options);
    options.onResult?.(r);
    return r;
  });
}

export { formatTable, throughput } from "./harness";
export type { BenchResult } from "./harness";
