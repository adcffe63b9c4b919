/** The native layer: tensors, their lifetime, and the kernels. */
export { native, nativeFunction } from "./addon";
export type { NativeCore } from "./addon";
export { floats, ints, keep, scope } from "./tensor";
export * from "./factories";
export type { DType, MemoryStats, Tensor } from "./tensor";
export * from "./ops/matmul";
export * from "./ops/swiglu";
export * from "./ops/losses";
