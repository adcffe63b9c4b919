/**
 * Choosing the native backend: the CPU addon (node-gyp-build: a prebuild or build/Release) or the
 * CUDA addon (built by `npm run build:cuda`). `device` comes from selectDevice() or the
 * RLHF_NATIVE_DEVICE environment variable: "cpu", "cuda", or "auto" (the default), which takes the
 * CUDA addon when one loads and sees a GPU, else the CPU addon. Every path tried and why it was
 * accepted or refused is kept for `rlhf-native doctor`.
 */
import * as fs from "fs";
import * as path from "path";

import { RlhfError } from "../errors";

export type Device = "auto" | "cpu" | "cuda";
export const DEVICES: readonly Device[] = ["auto", "cpu", "cuda"];

/** What the CUDA addon reports about the GPU (cudaInfo()). */
export interface CudaInfo {
  deviceCount: number;
  error: string;
  runtimeVersion: number;
  driverVersion: number;
  deviceName: string;
  computeCapability: string;
  totalMemory: number;
  /** How matmuls run: the cuBLASLt library loaded (and from where) or the handwritten fallback. */
  gemmBackend?: string;
}

export interface LoadAttempt {
  backend: "cpu" | "cuda";
  /** The addon file, or the directory node-gyp-build searched. */
  path: string;
  ok: boolean;
  /** Why it was chosen or refused. */
  reason: string;
}

export interface BackendChoice {
  backend: "cpu" | "cuda";
  device: Device;
  /** One line: which backend and why. */
  reason: string;
  attempts: LoadAttempt[];
  cuda?: CudaInfo;
}

export type RawModule = Record<string, unknown> & { Tensor: { prototype: Record<string, unknown> } };

/** The package root: lib/native (ts-jest) and dist/native (compiled) are both two levels down. */
export const packageRoot = path.resolve(__dirname, "..", "..");

/** Where a CUDA addon may be: RLHF_NATIVE_CUDA_ADDON, then the local cmake-js build. */
export function cudaAddonCandidates(): string[] {
  const out: string[] = [];
  const fromEnv = process.env.RLHF_NATIVE_CUDA_ADDON;
  if (fromEnv) out.push(path.resolve(fromEnv));
  out.push(path.join(packageRoot, "build-cuda", "Release", "rlhf_native.node"));
  return out;
}

export function parseDevice(value: string, source: string): Device {
  if ((DEVICES as readonly string[]).includes(value)) return value as Device;
  throw new RlhfError(`${source} must be one of ${DEVICES.join(", ")}; got "${value}"`);
}

function loadCpu(attempts: LoadAttempt[]): RawModule {
  // node-gyp-build has no types; it returns the loaded module.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const nodeGypBuild = require("node-gyp-build") as ((dir: string) => RawModule) & { resolve(dir: string): string };
  try {
    const file = nodeGypBuild.resolve(packageRoot);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require(file) as RawModule;
    attempts.push({ backend: "cpu", path: file, ok: true, reason: "loaded" });
    return mod;
  } catch (err) {
    attempts.push({ backend: "cpu", path: packageRoot, ok: false, reason: (err as Error).message });
    throw new RlhfError(
      `the rlhf-native CPU addon could not be loaded: ${(err as Error).message}\n` +
        "Build it with `npm run build` (needs a C++17 compiler, make and Python 3).",
    );
  }
}

/** The first CUDA addon that loads and sees a GPU, or undefined (every attempt recorded). */
function loadCuda(attempts: LoadAttempt[]): { mod: RawModule; info: CudaInfo } | undefined {
  for (const file of cudaAddonCandidates()) {
    if (!fs.existsSync(file)) {
      attempts.push({ backend: "cuda", path: file, ok: false, reason: "not found" });
      continue;
    }
    let mod: RawModule;
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      mod = require(file) as RawModule;
    } catch (err) {
      attempts.push({ backend: "cuda", path: file, ok: false, reason: `failed to load: ${(err as Error).message}` });
      continue;
    }
    const info = (mod.cudaInfo as (() => CudaInfo) | undefined)?.();
    if (!info) {
      attempts.push({ backend: "cuda", path: file, ok: false, reason: "not a CUDA build (no cudaInfo())" });
      continue;
    }
    if (info.deviceCount < 1) {
      const why = info.driverVersion === 0 ? "no NVIDIA driver (libcuda.so.1 not found)" : info.error || "0 devices";
      attempts.push({ backend: "cuda", path: file, ok: false, reason: `no usable GPU: ${why}` });
      continue;
    }
    attempts.push({ backend: "cuda", path: file, ok: true, reason: `${info.deviceCount} GPU(s), using ${info.deviceName}` });
    return { mod, info };
  }
  return undefined;
}

/** Loads the addon for `device`; throws an RlhfError listing every attempt when that is impossible. */
export function chooseBackend(device: Device): { mod: RawModule; choice: BackendChoice } {
  const attempts: LoadAttempt[] = [];
  if (device !== "cpu") {
    const cuda = loadCuda(attempts);
    if (cuda) {
      const reason = `cuda: ${cuda.info.deviceName} (compute ${cuda.info.computeCapability}), device=${device}`;
      return { mod: cuda.mod, choice: { backend: "cuda", device, reason, attempts, cuda: cuda.info } };
    }
    if (device === "cuda") {
      const tried = attempts.map((a) => `  ${a.path}: ${a.reason}`).join("\n");
      throw new RlhfError(
        `device "cuda" was requested but no CUDA addon with a usable GPU was found:\n${tried}\n` +
          "Build the CUDA addon with `npm run build:cuda`, or use device \"auto\" or \"cpu\".",
      );
    }
  }
  const mod = loadCpu(attempts);
  const why =
    device === "cpu"
      ? "device=cpu"
      : `device=auto and no CUDA addon with a GPU (${attempts
          .filter((a) => a.backend === "cuda")
          .map((a) => a.reason)
          .join("; ")})`;
  return { mod, choice: { backend: "cpu", device, reason: `cpu: ${why}`, attempts } };
}
