/** Tokenizers, chat templates and the byte-level BPE trainer. */
export { loadTokenizer, Tokenizer } from "./tokenizer";
export type { DecodeOptions, EncodeOptions, TokenizerFiles } from "./tokenizer";
export { CHAT_TEMPLATE_PRESETS, ChatTemplate, ChatTemplateError, loadChatTemplate, presetChatTemplate } from "./chat-template";
export type { ChatMessage, ChatRenderOptions, ChatTemplatePreset, ChatTemplateTokenizer, JsonValue } from "./chat-template";
export { CHAT_SPECIAL_TOKENS, defaultCorpus, saveTokenizerFiles, trainByteLevelBpe, trainChatTokenizer } from "./train-bpe";
export type { ByteLevelBpeJson, TrainBpeOptions, TrainedTokenizerFiles } from "./train-bpe";
