/** The native layer: tensors, their lifetime, and the kernels. */
export { backendInfo, native, nativeFunction, selectDevice } from "./addon";
export type { BackendChoice, CudaInfo, Device, LoadAttempt } from "./backend";
export type { NativeCore } from "./addon";
export { floats, ints, keep, scope } from "./tensor";
export * from "./factories";
export type { DType, MemoryStats, Tensor } from "./tensor";
export * from "./ops/matmul";
export * from "./ops/swiglu";
export * from "./ops/embedding";
export * from "./ops/rmsnorm";
export * from "./ops/lora";
export * from "./ops/adamw";
export * from "./ops/grad_norm";
export * from "./ops/rope";
export * from "./ops/attention";
export * from "./ops/logprob-gather";
export * from "./ops/cross-entropy";
export * from "./ops/losses";
