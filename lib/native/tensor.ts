/**
 * Native tensors as TypeScript sees them, and their lifetime management.
 *
 * Memory belongs to the native addon. Free it deterministically with `t.dispose()` or by running
 * work inside `scope(() => ...)`, which disposes every tensor created inside it except the ones it
 * returns; a garbage-collection finalizer frees whatever nobody disposed.
 */

export type DType = "float32" | "bfloat16" | "int32";

/** A handle on native memory. Views (reshape, transpose) share memory with their source. */
export interface Tensor {
  readonly dtype: DType;
  readonly shape: number[];
  /** Element strides per dimension. */
  readonly strides: number[];
  readonly numel: number;
  readonly byteLength: number;
  readonly isContiguous: boolean;
  readonly disposed: boolean;
  /** Releases this handle's reference now; the memory goes when the last view is disposed. */
  dispose(): void;
  /** A copy of the elements in row-major order: Float32Array (float32, bfloat16) or Int32Array. */
  toArray(): Float32Array | Int32Array;
  /** A converted copy (float32 <-> bfloat16 rounds to nearest even; int32 -> float). */
  to(dtype: DType): Tensor;
  /** A view with a new shape (one dimension may be -1); needs a contiguous tensor. */
  reshape(shape: readonly number[]): Tensor;
  /** A view with two dimensions swapped (not contiguous). */
  transpose(dim0: number, dim1: number): Tensor;
  /** This tensor's memory in a new handle if already contiguous, else a contiguous copy. */
  contiguous(): Tensor;
  clone(): Tensor;
  /**
   * Overwrites the elements from a tensor of the same dtype and shape, or from numbers. With
   * `offset` (a contiguous tensor only), `source` holds numbers for the elements offset ..
   * offset + source.length − 1 in row-major order, the rest untouched: large tensors fill in chunks.
   * A Float32Array for float32, an Int32Array for int32 or a Uint16Array of bits for bfloat16
   * copies as raw bytes; other sources convert element by element (bfloat16 rounds to nearest even).
   */
  copyFrom(source: Tensor | ArrayLike<number>, offset?: number): this;
  fill(value: number): this;
}

export interface MemoryStats {
  /** Bytes of native memory currently allocated (tensors and kernel scratch). */
  liveBytes: number;
  /** Highest liveBytes since the last resetPeakBytes(). */
  peakBytes: number;
  liveBuffers: number;
}

/** The elements of a float32 or bfloat16 tensor. */
export function floats(t: Tensor): Float32Array {
  if (t.dtype === "int32") throw new TypeError(`expected a float tensor, got int32 [${t.shape.join(", ")}]`);
  return t.toArray() as Float32Array;
}

/** The elements of an int32 tensor. */
export function ints(t: Tensor): Int32Array {
  if (t.dtype !== "int32") throw new TypeError(`expected an int32 tensor, got ${t.dtype} [${t.shape.join(", ")}]`);
  return t.toArray() as Int32Array;
}

// ---------------------------------------------------------------------------------------------
// Scopes. Every tensor the addon hands to JS passes through track(); the innermost open scope
// owns it. A tensor seen before (e.g. an `out` argument returned again) keeps its owner.

const seen = new WeakSet<object>();
const scopes: Set<Tensor>[] = [];

/** Records a tensor created by the addon in the innermost scope (if any). */
export function track<T extends Tensor>(t: T): T {
  if (!seen.has(t)) {
    seen.add(t);
    scopes[scopes.length - 1]?.add(t);
  }
  return t;
}

/** Removes a tensor from every open scope so that it outlives them (dispose it yourself). */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

/**
 * Runs `fn` and disposes every tensor created inside it, except the tensors found in its result
 * (a tensor, or arrays/plain objects holding tensors), which move to the enclosing scope.
 * `fn` must be synchronous: tensors created after an await could not be attributed to the scope.
 */
export function scope<R>(fn: () => R): R {
  const owned = new Set<Tensor>();
  scopes.push(owned);
  let result: R;
  try {
    result = fn();
  } catch (err) {
    scopes.pop();
    for (const t of owned) t.dispose();
    throw err;
  }
  scopes.pop();
  if (result instanceof Promise) {
    for (const t of owned) t.dispose();
    throw new TypeError("scope(fn): fn must be synchronous (it returned a Promise)");
  }
  const survivors = new Set<Tensor>();
  collectTensors(result, survivors, owned);
  for (const t of owned) {
    if (survivors.has(t)) scopes[scopes.length - 1]?.add(t);
    else t.dispose();
  }
  return result;
}

/**
 * An object literal or a native op's result object: its prototype is an Object.prototype (whose own
 * prototype is null) or null. Checked structurally because a native result comes from the main
 * realm, whose Object.prototype differs from a sandbox's (jest's, vm contexts).
 */
function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === null || Object.getPrototypeOf(proto) === null;
}

function collectTensors(value: unknown, out: Set<Tensor>, owned: Set<Tensor>): void {
  if (value === null || typeof value !== "object") return;
  if (owned.has(value as Tensor)) {
    out.add(value as Tensor);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collectTensors(v, out, owned);
  } else if (isPlainObject(value)) {
    for (const v of Object.values(value)) collectTensors(v, out, owned);
  }
}
