#!/usr/bin/env node
/** The rlhf-native command line. */
import { Command, InvalidArgumentError } from "commander";
import * as os from "os";

import { formatTable, runBenchmarks } from "../bench";
import { selectDevice } from "../native/addon";
import { parseDevice } from "../native/backend";
import { doctorReport, formatDoctorReport } from "./doctor";
import { RlhfError } from "../errors";
import { numThreads, setNumThreads } from "../native/factories";

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`expected a positive integer, got "${value}"`);
  return n;
}

function main(argv: string[]): void {
  const version = require("../../package.json").version as string;
  const program = new Command();
  program
    .name("rlhf-native")
    .description("Preference tuning and RL fine-tuning of language models with native kernels.")
    .version(version);

  program
    .command("doctor")
    .description("show the backend in use and why, the CPU and GPU, driver/runtime versions, every addon path tried")
    .option("--json", "print the report as JSON")
    .option("--device <device>", "auto, cpu or cuda (default: RLHF_NATIVE_DEVICE or auto)")
    .action((opts: { json?: boolean; device?: string }) => {
      if (opts.device) selectDevice(parseDevice(opts.device, "--device"));
      const report = doctorReport(version);
      console.log(opts.json ? JSON.stringify(report, null, 2) : formatDoctorReport(report));
    });

  program
    .command("bench")
    .description("time each CPU kernel against a naive baseline measured in the same run")
    .option("--json", "print results as JSON instead of a table")
    .option("--all", "run every shape, not only the quick set")
    .option("--filter <kernel>", "only kernels whose name contains this text")
    .option("--threads <n>", "CPU threads (default: RLHF_NUM_THREADS or all cores)", positiveInt)
    .option("--budget-ms <ms>", "time spent measuring each function", positiveInt, 1000)
    .action((opts: { json?: boolean; all?: boolean; filter?: string; threads?: number; budgetMs: number }) => {
      // These benchmarks compare CPU kernels with CPU baselines; the GPU's are rlhf_cuda_bench
      // (scripts/gpu-check.sh).
      selectDevice("cpu");
      if (opts.threads) setNumThreads(opts.threads);
      const cpu = os.cpus()[0]?.model ?? "unknown CPU";
      const date = new Date().toISOString();
      if (!opts.json) {
        console.log(`rlhf-native bench: CPU backend, ${numThreads()} threads, ${cpu}, Node ${process.version}, ${date}`);
      }
      const results = runBenchmarks({
        all: Boolean(opts.all),
        filter: opts.filter,
        budgetMs: opts.budgetMs,
        onResult: opts.json ? undefined : (r) => console.log(`  done ${r.kernel} ${r.shape}`),
      });
      if (opts.json) {
        const meta = { backend: "cpu", threads: numThreads(), cpu, node: process.version, date };
        console.log(JSON.stringify({ ...meta, results }, null, 2));
      } else {
        console.log(formatTable(results));
      }
    });

  program.parse(argv);
}

try {
  main(process.argv);
} catch (err) {
  if (err instanceof RlhfError) {
    console.error(`error: ${err.message}`);
    process.exit(1);
  }
  throw err;
}
