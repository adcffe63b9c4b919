/**
 * The loaded native addon, instrumented so that every tensor it returns is tracked by the innermost
 * scope() (see tensor.ts). Which addon (CPU or CUDA) is decided once, on first use, by
 * chooseBackend() (backend.ts) from selectDevice() or RLHF_NATIVE_DEVICE.
 */
import { BackendChoice, chooseBackend, Device, parseDevice, RawModule } from "./backend";
import { DType, MemoryStats, Tensor, track } from "./tensor";

export interface NativeCore {
  readonly backend: "cpu" | "cuda";
  tensor(dtype: DType, shape: readonly number[], data?: ArrayLike<number>): Tensor;
  zeros(dtype: DType, shape: readonly number[]): Tensor;
  memoryStats(): MemoryStats;
  resetPeakBytes(): void;
  numThreads(): number;
  setNumThreads(n: number): void;
}

type NativeModule = RawModule;

// Tensor methods that return new handles.
const TENSOR_RETURNING_METHODS = ["to", "reshape", "transpose", "contiguous", "clone"];

let loaded: { mod: NativeModule; choice: BackendChoice } | undefined;
let requestedDevice: Device | undefined;

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
    const env = process.env.RLHF_NATIVE_DEVICE;
    const device = requestedDevice ?? (env ? parseDevice(env, "RLHF_NATIVE_DEVICE") : "auto");
    const { mod, choice } = chooseBackend(device);
    loaded = { mod: instrument(mod), choice };
  }
  return loaded.mod;
}

/**
 * Chooses the device before the addon is first used: "auto" (the default; CUDA when a CUDA addon
 * loads and sees a GPU, else CPU), "cpu" or "cuda" (an error when no GPU addon works). Calling it
 * after the addon was loaded with a different choice is an error: tensors of two backends cannot mix.
 */
export function selectDevice(device: Device): void {
  if (loaded && loaded.choice.device !== device) {
    throw new Error(
      `rlhf-native already runs on the ${loaded.choice.backend} backend (device "${loaded.choice.device}"); ` +
        "select the device before creating any tensor",
    );
  }
  requestedDevice = device;
}

/** The backend in use, why it was chosen, and every addon path tried (loads the addon). */
export function backendInfo(): BackendChoice {
  load();
  return (loaded as { choice: BackendChoice }).choice;
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
