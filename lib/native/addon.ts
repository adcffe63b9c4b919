/**
 * Loads the native addon and instruments it so that every tensor it returns is tracked by the
 * innermost scope() (see tensor.ts). The CPU addon is found by node-gyp-build: a prebuild in
 * prebuilds/<platform>-<arch>/ or a local build in build/Release/.
 */
import * as path from "path";

import { DType, MemoryStats, Tensor, track } from "./tensor";

/** The addon's module-level functions shared by every backend. */
export interface NativeCore {
  readonly backend: "cpu" | "cuda";
  tensor(dtype: DType, shape: readonly number[], data?: ArrayLike<number>): Tensor;
  zeros(dtype: DType, shape: readonly number[]): Tensor;
  memoryStats(): MemoryStats;
  resetPeakBytes(): void;
  numThreads(): number;
  setNumThreads(n: number): void;
}

type NativeModule = Record<string, unknown> & { Tensor: { prototype: Record<string, unknown> } };

/** The package root: lib/native (ts-jest) and dist/native (compiled) are both two levels down. */
export const packageRoot = path.resolve(__dirname, "..", "..");

// Tensor methods that return new handles.
const TENSOR_RETURNING_METHODS = ["to", "reshape", "transpose", "contiguous", "clone"];

let loaded: NativeModule | undefined;

function isTensor(mod: NativeModule, value: unknown): value is Tensor {
  return typeof value === "object" && value !== null && value instanceof (mod.Tensor as unknown as Function);
}

/** Tracks every tensor in a native result: a tensor, or a plain object of tensors and numbers. */
function trackResult(mod: NativeModule, result: unknown): void {
  if (isTensor(mod, result)) {
    track(result);
  } else if (typeof result === "object" && result !== null) {
    for (const v of Object.values(result)) if (isTensor(mod, v)) track(v);
  }
}

function instrument(mod: NativeModule): NativeModule {
  const proto = mod.Tensor.prototype;
  for (const name of TENSOR_RETURNING_METHODS) {
    const original = proto[name] as (this: unknown, ...args: unknown[]) => Tensor;
    proto[name] = function (this: unknown, ...args: unknown[]): Tensor {
      return track(original.apply(this, args));
    };
  }
  const wrapped: NativeModule = { ...mod };
  for (const [name, value] of Object.entries(mod)) {
    if (typeof value !== "function" || name === "Tensor") continue;
    const fn = value as (...args: unknown[]) => unknown;
    wrapped[name] = (...args: unknown[]): unknown => {
      const result = fn(...args);
      trackResult(mod, result);
      return result;
    };
  }
  return wrapped;
}

function load(): NativeModule {
  if (!loaded) {
    // node-gyp-build has no types; it returns the loaded module.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const nodeGypBuild = require("node-gyp-build") as (dir: string) => NativeModule;
    loaded = instrument(nodeGypBuild(packageRoot));
  }
  return loaded;
}

/** The loaded addon's core functions. */
export function native(): NativeCore {
  return load() as unknown as NativeCore;
}

/**
 * A native op by name, typed by the caller (each ops module declares the raw signature it binds).
 * Throws when the addon lacks the op, e.g. an addon built from older sources.
 */
export function nativeFunction<F>(name: string): F {
  const fn = load()[name];
  if (typeof fn !== "function") {
    throw new Error(`the rlhf-native addon has no function '${name}'; rebuild it with \`npm run build\``);
  }
  return fn as F;
}
