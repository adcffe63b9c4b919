/**
 * Kernel benchmarks: each case times our kernel and a baseline in the same run, on the same
 * inputs, and reports the medians, the ratio, a throughput figure and both peak memories.
 */
import { memoryStats, resetPeakBytes } from "../native/factories";
import { scope } from "../native/tensor";

export interface Timing {
  medianMs: number;
  runs: number;
  /** Native bytes allocated during one call above what was live before it. */
  peakBytes: number;
}

export interface BenchResult {
  kernel: string;
  shape: string;
  ours: Timing;
  /** Work per call, for the throughput column. */
  work: { amount: number; unit: "GFLOP" | "GB" };
  baseline?: { name: string } & Timing;
}

export interface BenchCase {
  kernel: string;
  shape: string;
  /** Part of the default (quick) set; the rest run with --all. */
  quick: boolean;
  run(options: BenchOptions): BenchResult;
}

export interface BenchOptions {
  /** Stop timing after this many milliseconds per measured function (at least 3 runs). */
  budgetMs: number;
}

/**
 * Times fn: one warm-up call, then runs until the budget is spent (3 ≤ runs ≤ 50); median. Each
 * call runs in its own scope, so the tensors it creates are freed before the next one, as in a
 * training step (left alive, they would pile up and make V8 collect garbage under the timer).
 */
export function measure(fn: () => unknown, options: BenchOptions): Timing {
  const call = () => scope(() => void fn());
  const before = memoryStats().liveBytes;
  resetPeakBytes();
  call();
  const peakBytes = memoryStats().peakBytes - before;
  const samples: number[] = [];
  const start = performance.now();
  while (samples.length < 3 || (samples.length < 50 && performance.now() - start < options.budgetMs)) {
    const t0 = performance.now();
    call();
    samples.push(performance.now() - t0);
  }
  samples.sort((a, b) => a - b);
  return { medianMs: samples[Math.floor(samples.length / 2)], runs: samples.length, peakBytes };
}

/** Throughput of a result: GFLOP/s or GB/s. */
export function throughput(r: BenchResult): string {
  const perSecond = r.work.amount / (r.ours.medianMs / 1000);
  return `${perSecond.toFixed(1)} ${r.work.unit}/s`;
}

function formatBytes(bytes: number): string {
  if (bytes >= 1 << 30) return `${(bytes / (1 << 30)).toFixed(2)} GiB`;
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  if (bytes >= 1 << 10) return `${(bytes / (1 << 10)).toFixed(1)} KiB`;
  return `${bytes} B`;
}

/** A fixed-width text table of results. */
export function formatTable(results: BenchResult[]): string {
  const header = ["kernel", "shape", "ours ms", "throughput", "ours peak", "baseline", "base ms", "base peak", "speedup"];
  const rows = results.map((r) => [
    r.kernel,
    r.shape,
    r.ours.medianMs.toFixed(3),
    throughput(r),
    formatBytes(r.ours.peakBytes),
    r.baseline?.name ?? "-",
    r.baseline ? r.baseline.medianMs.toFixed(3) : "-",
    r.baseline ? formatBytes(r.baseline.peakBytes) : "-",
    r.baseline ? `${(r.baseline.medianMs / r.ours.medianMs).toFixed(2)}x` : "-",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}
