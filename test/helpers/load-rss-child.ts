/**
 * Child process for the safetensors memory test (run through ts-child.ts).
 *
 *   write FOLDER F32|BF16   saves a Llama-shaped model of 200 MB in float32 (embedding 64 MB, the
 *                           largest tensor, then 4 layers) as shards of at most 80 MB
 *   load FOLDER             loads every tensor as float32, keeping them all, and prints
 *                           {weightBytes, baselineRss, peakRssSampled, peakRssHwm} as JSON
 *
 * Writing and loading run in separate processes so that memory freed after writing (which the
 * allocator may keep) cannot hide the loader's own growth.
 */
import * as fs from "fs";
import { Worker } from "worker_threads";

import { Tensor, tensor, zeros } from "../../lib";
import { openSafetensors, writeShardedSafetensors } from "../../lib/model/safetensors";

const HIDDEN = 1024;
const VOCAB = 16384;
const LAYERS = 4;

/** [name, shape] of every tensor, in the order transformers' state_dict lists them. */
function layout(): [string, number[]][] {
  const out: [string, number[]][] = [["model.embed_tokens.weight", [VOCAB, HIDDEN]]];
  for (let i = 0; i < LAYERS; ++i) {
    const p = `model.layers.${i}`;
    out.push(
      [`${p}.self_attn.q_proj.weight`, [HIDDEN, HIDDEN]],
      [`${p}.self_attn.k_proj.weight`, [HIDDEN / 4, HIDDEN]],
      [`${p}.self_attn.v_proj.weight`, [HIDDEN / 4, HIDDEN]],
      [`${p}.self_attn.o_proj.weight`, [HIDDEN, HIDDEN]],
      [`${p}.mlp.gate_proj.weight`, [2 * HIDDEN, HIDDEN]],
      [`${p}.mlp.up_proj.weight`, [2 * HIDDEN, HIDDEN]],
      [`${p}.mlp.down_proj.weight`, [HIDDEN, 2 * HIDDEN]],
      [`${p}.input_layernorm.weight`, [HIDDEN]],
      [`${p}.post_attention_layernorm.weight`, [HIDDEN]],
    );
  }
  out.push(["model.norm.weight", [HIDDEN]]);
  return out;
}

function write(folder: string, stored: string): void {
  let seed = 12345;
  const tensors: [string, Tensor][] = layout().map(([name, shape]) => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; ++i) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      data[i] = seed / 2 ** 32 - 0.5;
    }
    return [name, tensor("float32", shape, data)];
  });
  writeShardedSafetensors(folder, tensors, 80 * 1024 * 1024, { asDtype: stored === "BF16" ? "bfloat16" : "float32" });
}

/** Resets the kernel's peak-RSS counter (VmHWM); false where /proc does not allow it. */
function resetPeakRss(): boolean {
  try {
    fs.writeFileSync("/proc/self/clear_refs", "5");
    return true;
  } catch {
    return false;
  }
}

function peakRssHwm(): number {
  const kb = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync("/proc/self/status", "utf8"));
  return Number(kb?.[1]) * 1024;
}

/** A worker thread sampling the process RSS every millisecond into shared memory. */
function startSampler(): { stop(): number } {
  const shared = new SharedArrayBuffer(16);
  const flags = new Int32Array(shared, 0, 2); // [running, stop]
  const peak = new Float64Array(shared, 8, 1);
  const worker = new Worker(
    `const { workerData } = require("worker_threads");
     const flags = new Int32Array(workerData, 0, 2);
     const peak = new Float64Array(workerData, 8, 1);
     Atomics.store(flags, 0, 1);
     while (Atomics.load(flags, 1) === 0) {
       peak[0] = Math.max(peak[0], process.memoryUsage.rss());
       Atomics.wait(flags, 1, 0, 1);
     }`,
    { eval: true, workerData: shared },
  );
  while (Atomics.load(flags, 0) === 0) Atomics.wait(flags, 1, 0, 1);
  return {
    stop() {
      Atomics.store(flags, 1, 1);
      Atomics.notify(flags, 1);
      void worker.terminate();
      return peak[0];
    },
  };
}

/** Collects garbage and lets V8 hand freed pages back, so that the baseline is settled. */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; ++i) {
    (global as unknown as { gc(): void }).gc();
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function load(folder: string): Promise<void> {
  zeros("float32", [1]).dispose(); // load the addon before the baseline
  const sampler = startSampler();
  await settle();
  const hwm = resetPeakRss();
  const baselineRss = process.memoryUsage.rss();
  const reader = openSafetensors(folder);
  const loaded = reader.names().map((name) => reader.load(name, "float32"));
  reader.close();
  const peakRssSampled = sampler.stop();
  const weightBytes = loaded.reduce((sum, t) => sum + t.byteLength, 0);
  process.stdout.write(
    JSON.stringify({ weightBytes, baselineRss, peakRssSampled, peakRssHwm: hwm ? peakRssHwm() : null, files: reader.files.length }),
  );
  for (const t of loaded) t.dispose();
}

const [mode, folder, stored] = process.argv.slice(2);
if (mode === "write") write(folder, stored);
else void load(folder);
