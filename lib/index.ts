/** rlhf-native's public API. */
export * from "./native";
export { RlhfError } from "./errors";
export * from "./tokenizer";
export {
  DEFAULT_MAX_SHARD_BYTES,
  openSafetensors,
  writeSafetensors,
  writeShardedSafetensors,
} from "./model/safetensors";
export type {
  NamedTensors,
  SafetensorsDType,
  SafetensorsFile,
  SafetensorsReader,
  SafetensorsTensorInfo,
  ShardedWriteResult,
  WriteSafetensorsOptions,
} from "./model/safetensors";
export { OPTIONAL_MODEL_FILES, REQUIRED_MODEL_FILES, resolveModel } from "./model/hub";
export type { ResolvedModel, ResolveModelOptions } from "./model/hub";
