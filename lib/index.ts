/** rlhf-native's public API. */
export * from "./native";
export * from "./tokenizer";
