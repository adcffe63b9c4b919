/**
 * A Hugging Face tokenizer folder (tokenizer.json, tokenizer_config.json, generation_config.json,
 * chat templates) read the way transformers 5 reads it, over `@huggingface/tokenizers`, which does
 * the normalization, pre-tokenization, model (BPE, Unigram, WordPiece), added-token matching and
 * decoding of tokenizer.json.
 *
 * What transformers 5 adds on top of tokenizer.json, and so does this module:
 * - the named special tokens of tokenizer_config.json (`bos_token`, `eos_token`, `unk_token`,
 *   `sep_token`, `pad_token`, `cls_token`, `mask_token`) and `additional_special_tokens` /
 *   `extra_special_tokens` are special added tokens: matched whole in text, skipped by
 *   `skipSpecialTokens`; one missing from tokenizer.json's `added_tokens` is added (the id of the
 *   model's vocabulary entry of that text, else the next free id), as are `added_tokens_decoder`
 *   entries missing there;
 * - the special tokens `encode` adds come from tokenizer.json's `post_processor` (TemplateProcessing,
 *   ByteLevel, RobertaProcessing, BertProcessing, Sequence): `add_bos_token` / `add_eos_token` in
 *   tokenizer_config.json are ignored when tokenizer.json exists, as transformers 5 ignores them;
 * - `split_special_tokens: true` encodes special tokens' text as ordinary text;
 * - decoding cleans up spaces before punctuation only when `clean_up_tokenization_spaces` is true
 *   and the model is not BPE (transformers 5 refuses that cleanup for BPE, which it corrupts,
 *   unless `clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output` is set);
 * - chat_template.jinja and additional_chat_templates/<name>.jinja take priority over the
 *   `chat_template` of tokenizer_config.json (a string, or a list of `{name, template}`).
 *
 * Not reproduced: `single_word` on an added token (`@huggingface/tokenizers` matches it inside
 * words too; Llama-family tokenizers do not use it).
 */
import * as fs from "fs";
import * as path from "path";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";

import { RlhfError } from "../errors";
import type { ChatTemplateTokenizer } from "./chat-template";

/** transformers 5's SPECIAL_TOKENS_ATTRIBUTES: the named special tokens, template variables all. */
const NAMED_SPECIAL_TOKENS = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"] as const;

/** The tokenizer.json models `@huggingface/tokenizers` implements. */
const SUPPORTED_MODELS = ["BPE", "Unigram", "WordPiece"];

export interface EncodeOptions {
  /** Add the special tokens of tokenizer.json's post-processor, e.g. a leading BOS (default true, as in transformers). */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Leave out special tokens (default false). */
  skipSpecialTokens?: boolean;
}

/** The files of a tokenizer folder, parsed (see `loadTokenizer`). */
export interface TokenizerFiles {
  /** tokenizer.json. */
  tokenizer: unknown;
  /** tokenizer_config.json. */
  config: unknown;
  /** generation_config.json, when the folder has one. */
  generationConfig?: unknown;
  /** special_tokens_map.json (read only when tokenizer_config.json has no `added_tokens_decoder`, as transformers does). */
  specialTokensMap?: unknown;
  /** chat_template.jinja as "default" and additional_chat_templates/<name>.jinja as <name>. */
  chatTemplateFiles?: Readonly<Record<string, string>>;
  /** The folder the files came from, named in messages. */
  source: string;
}

/** One entry of tokenizer.json's `added_tokens`. */
interface AddedToken {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

type JsonObject = Record<string, unknown>;

/** A loaded tokenizer: text to ids and back, special tokens, chat templates. */
export class Tokenizer implements ChatTemplateTokenizer {
  /** The folder it was read from. */
  readonly source: string;
  /** Number of distinct tokens, added ones included (transformers' `len(tokenizer)`). */
  readonly vocabSize: number;
  readonly bosToken: string | null;
  readonly bosTokenId: number | null;
  readonly eosToken: string | null;
  readonly eosTokenId: number | null;
  /**
   * The ids that end generation: generation_config.json's `eos_token_id` (a number or a list; e.g.
   * Llama 3 Instruct stops at <|end_of_text|>, <|eom_id|> and <|eot_id|>), else the eos token.
   */
  readonly eosTokenIds: readonly number[];
  /** The pad token, or the eos token when the tokenizer has none (TRL pads with eos then). */
  readonly padToken: string | null;
  readonly padTokenId: number | null;
  /** The default chat template, or null when the tokenizer has none. */
  readonly chatTemplate: string | null;
  /** Every chat template by name; the default one is "default". */
  readonly chatTemplates: Readonly<Record<string, string>>;
  /** The named special tokens that are set (`bos_token`, `eos_token`, ...): chat-template variables. */
  readonly specialTokensMap: Readonly<Record<string, string>>;
  /** Every special token's text (added tokens marked special), in id order. */
  readonly specialTokens: readonly string[];

  private constructor(
    fields: Omit<Tokenizer, "encode" | "decode" | "tokenToId" | "idToToken">,
    private readonly hf: HfTokenizer,
    private readonly hfEncoder: HfTokenizer,
    private readonly prefixIds: readonly number[],
    private readonly suffixIds: readonly number[],
    private readonly cleanUpSpaces: boolean,
  ) {
    this.source = fields.source;
    this.vocabSize = fields.vocabSize;
    this.bosToken = fields.bosToken;
    this.bosTokenId = fields.bosTokenId;
    this.eosToken = fields.eosToken;
    this.eosTokenId = fields.eosTokenId;
    this.eosTokenIds = fields.eosTokenIds;
    this.padToken = fields.padToken;
    this.padTokenId = fields.padTokenId;
    this.chatTemplate = fields.chatTemplate;
    this.chatTemplates = fields.chatTemplates;
    this.specialTokensMap = fields.specialTokensMap;
    this.specialTokens = fields.specialTokens;
  }

  /** Text to ids, as transformers' fast tokenizer encodes one sequence. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const ids = this.hfEncoder.encode(text, { add_special_tokens: false }).ids;
    return options.addSpecialTokens ?? true ? [...this.prefixIds, ...ids, ...this.suffixIds] : ids;
  }

  /** Ids to text. Throws a RangeError for an id that is no token of this tokenizer. */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || this.hf.id_to_token(id) === undefined) {
        throw new RangeError(`decode: ${id} is not a token id of the tokenizer in ${this.source}`);
      }
    }
    if (ids.length === 0) return "";
    return this.hf.decode(ids.slice(), {
      skip_special_tokens: options.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: this.cleanUpSpaces,
    });
  }

  /** The id of a token (an added token or a vocabulary entry), or undefined. */
  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  /** The token of an id, or undefined. */
  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  /** Builds a tokenizer from parsed files; `loadTokenizer` reads them from a folder. */
  static fromFiles(files: TokenizerFiles): Tokenizer {
    const where = (file: string) => path.join(files.source, file);
    const tokenizerJson = expectObject(files.tokenizer, where("tokenizer.json"));
    const config = expectObject(files.config, where("tokenizer_config.json"));
    const model = expectObject(tokenizerJson.model, `${where("tokenizer.json")}: "model"`);
    if (!SUPPORTED_MODELS.includes(model.type as string)) {
      throw new RlhfError(`${where("tokenizer.json")}: model type ${JSON.stringify(model.type)} is not supported (${SUPPORTED_MODELS.join(", ")} are)`);
    }
    const vocab = modelVocabulary(model, where("tokenizer.json"));

    const { named, extra } = specialTokenNames(config, files.specialTokensMap, where);
    const added = completeAddedTokens(tokenizerJson.added_tokens, config.added_tokens_decoder, [...named.values(), ...extra], vocab, where);

    const hfJson = {
      ...tokenizerJson,
      normalizer: tokenizerJson.normalizer ?? null,
      pre_tokenizer: tokenizerJson.pre_tokenizer ?? null,
      decoder: tokenizerJson.decoder ?? null,
      // The special tokens encode adds are ours to add (specialTokenFrame).
      post_processor: null,
      added_tokens: added,
    };
    const hfConfig = { eos_token: named.get("eos_token") };
    const build = (json: JsonObject) => {
      try {
        return new HfTokenizer(json, hfConfig);
      } catch (e) {
        throw new RlhfError(`${where("tokenizer.json")}: cannot build the tokenizer: ${e instanceof Error ? e.message : String(e)}`);
      }
    };
    const hf = build(hfJson);
    const splitSpecial = config.split_special_tokens === true;
    const hfEncoder = splitSpecial ? build({ ...hfJson, added_tokens: added.filter((t) => !t.special) }) : hf;

    const { prefix, suffix } = specialTokenFrame(tokenizerJson.post_processor, where("tokenizer.json"));
    const idOf = (token: string | null) => (token === null ? null : (hf.token_to_id(token) ?? null));
    const eosTokenId = idOf(named.get("eos_token") ?? null);
    const padToken = named.get("pad_token") ?? named.get("eos_token") ?? null;
    const chatTemplates = readChatTemplates(files.chatTemplateFiles, config.chat_template, where("tokenizer_config.json"));
    const vocabSize = new Set([...vocab.keys(), ...added.map((t) => t.content)]).size;

    const fields = {
      source: files.source,
      vocabSize,
      bosToken: named.get("bos_token") ?? null,
      bosTokenId: idOf(named.get("bos_token") ?? null),
      eosToken: named.get("eos_token") ?? null,
      eosTokenId,
      eosTokenIds: generationEosIds(files.generationConfig, where("generation_config.json"), vocabSize) ?? (eosTokenId === null ? [] : [eosTokenId]),
      padToken,
      padTokenId: idOf(padToken),
      chatTemplate: chatTemplates.default ?? null,
      chatTemplates,
      specialTokensMap: Object.fromEntries(named),
      specialTokens: added.filter((t) => t.special).sort((a, b) => a.id - b.id).map((t) => t.content),
    };
    const cleanUpSpaces =
      config.clean_up_tokenization_spaces === true &&
      (model.type !== "BPE" || config.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output === true);
    return new Tokenizer(fields, hf, hfEncoder, prefix, suffix, cleanUpSpaces);
  }
}

/**
 * The named special tokens (from tokenizer_config.json, or from the legacy special_tokens_map.json,
 * which transformers reads only when the config has no `added_tokens_decoder`) and the extra ones.
 */
function specialTokenNames(
  config: JsonObject,
  specialTokensMap: unknown,
  where: (file: string) => string,
): { named: Map<string, string>; extra: string[] } {
  const legacyMap =
    specialTokensMap !== undefined && config.added_tokens_decoder === undefined
      ? expectObject(specialTokensMap, where("special_tokens_map.json"))
      : undefined;
  const named = new Map<string, string>();
  for (const key of NAMED_SPECIAL_TOKENS) {
    const fromLegacy = legacyMap?.[key];
    const value =
      fromLegacy !== undefined && fromLegacy !== null
        ? tokenText(fromLegacy, `${where("special_tokens_map.json")}: "${key}"`)
        : tokenText(config[key], `${where("tokenizer_config.json")}: "${key}"`);
    if (value !== null) named.set(key, value);
  }
  // transformers 5 renames additional_special_tokens to extra_special_tokens unless that is set.
  const extra = [
    ...tokenList(config.extra_special_tokens ?? config.additional_special_tokens, where("tokenizer_config.json")),
    ...tokenList(legacyMap?.additional_special_tokens, where("special_tokens_map.json")),
  ];
  return { named, extra };
}

/**
 * tokenizer.json's added tokens, plus the `added_tokens_decoder` entries of tokenizer_config.json
 * it lacks, plus the special tokens it lacks; every special token is marked special. A token added
 * here gets the id of the vocabulary entry with its text, else the next free id (as `add_tokens`).
 */
function completeAddedTokens(
  fromJson: unknown,
  fromConfig: unknown,
  specials: readonly string[],
  vocab: ReadonlyMap<string, number>,
  where: (file: string) => string,
): AddedToken[] {
  const added = addedTokens(fromJson, where("tokenizer.json"));
  const byContent = new Map(added.map((t) => [t.content, t]));
  let nextId = 0;
  for (const id of vocab.values()) nextId = Math.max(nextId, id + 1);
  for (const token of added) nextId = Math.max(nextId, token.id + 1);
  const add = (token: AddedToken) => {
    const entry = { ...token, id: vocab.get(token.content) ?? nextId++ };
    added.push(entry);
    byContent.set(entry.content, entry);
  };
  const configWhere = `${where("tokenizer_config.json")}: "added_tokens_decoder"`;
  for (const [id, entry] of Object.entries(expectOptionalObject(fromConfig, configWhere))) {
    const token = addedTokenFrom(entry, Number(id), `${configWhere}."${id}"`);
    if (!byContent.has(token.content)) add(token);
  }
  for (const content of specials) {
    const existing = byContent.get(content);
    if (existing === undefined) add({ id: -1, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    else existing.special = true;
  }
  return added;
}

/**
 * Reads a Hugging Face tokenizer folder: tokenizer.json and tokenizer_config.json (both required),
 * generation_config.json, special_tokens_map.json, chat_template.jinja and
 * additional_chat_templates/*.jinja when present. Missing or broken files are RlhfErrors naming them.
 */
export function loadTokenizer(dir: string): Tokenizer {
  let isDir = false;
  try {
    isDir = fs.statSync(dir).isDirectory();
  } catch {
    throw new RlhfError(`tokenizer folder ${dir} does not exist`);
  }
  if (!isDir) throw new RlhfError(`${dir} is not a folder; a tokenizer is a folder with tokenizer.json and tokenizer_config.json`);
  return Tokenizer.fromFiles({
    tokenizer: readJson(dir, "tokenizer.json", true),
    config: readJson(dir, "tokenizer_config.json", true),
    generationConfig: readJson(dir, "generation_config.json", false),
    specialTokensMap: readJson(dir, "special_tokens_map.json", false),
    chatTemplateFiles: readChatTemplateFiles(dir),
    source: dir,
  });
}

function readJson(dir: string, name: string, required: boolean): unknown {
  const file = path.join(dir, name);
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") {
      if (!required) return undefined;
      const why =
        name === "tokenizer.json"
          ? "the fast-tokenizer file; a folder with only a sentencepiece tokenizer.model is not supported"
          : "it holds the special tokens and the chat template";
      throw new RlhfError(`${file}: not found (${why})`);
    }
    throw new RlhfError(`${file}: cannot read it: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new RlhfError(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

function readChatTemplateFiles(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const read = (file: string) => {
    try {
      return fs.readFileSync(file, "utf8");
    } catch (e) {
      throw new RlhfError(`${file}: cannot read it: ${(e as Error).message}`);
    }
  };
  const main = path.join(dir, "chat_template.jinja");
  if (fs.existsSync(main)) out.default = read(main);
  const extraDir = path.join(dir, "additional_chat_templates");
  if (fs.existsSync(extraDir) && fs.statSync(extraDir).isDirectory()) {
    for (const name of fs.readdirSync(extraDir).sort()) {
      if (name.endsWith(".jinja")) out[name.slice(0, -".jinja".length)] = read(path.join(extraDir, name));
    }
  }
  return out;
}

/** Template files win over tokenizer_config.json's `chat_template` (transformers 5). */
function readChatTemplates(fileTemplates: Readonly<Record<string, string>> | undefined, value: unknown, where: string): Record<string, string> {
  if (fileTemplates !== undefined && Object.keys(fileTemplates).length > 0) return { ...fileTemplates };
  if (value === undefined || value === null) return {};
  if (typeof value === "string") return { default: value };
  if (Array.isArray(value)) {
    const out: Record<string, string> = {};
    for (const entry of value) {
      const e = expectObject(entry, `${where}: "chat_template" entry`);
      if (typeof e.name !== "string" || typeof e.template !== "string") {
        throw new RlhfError(`${where}: "chat_template" entries must be {"name": string, "template": string}`);
      }
      out[e.name] = e.template;
    }
    return out;
  }
  throw new RlhfError(`${where}: "chat_template" must be a string or a list of {"name", "template"}`);
}

/** generation_config.json's `eos_token_id` as a list, or undefined when it has none. */
function generationEosIds(config: unknown, where: string, vocabSize: number): number[] | undefined {
  if (config === undefined) return undefined;
  const value = expectObject(config, where).eos_token_id;
  if (value === undefined || value === null) return undefined;
  const ids = Array.isArray(value) ? value : [value];
  for (const id of ids) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new RlhfError(`${where}: "eos_token_id" must be a token id (0 to ${vocabSize - 1}) or a list of them, got ${JSON.stringify(value)}`);
    }
  }
  return ids as number[];
}

/** model.vocab: a {token: id} object (BPE, WordPiece, WordLevel) or a [token, score] list (Unigram). */
function modelVocabulary(model: JsonObject, where: string): Map<string, number> {
  const vocab = model.vocab;
  if (Array.isArray(vocab)) {
    return new Map(
      vocab.map((entry, i) => {
        if (!Array.isArray(entry) || typeof entry[0] !== "string") throw new RlhfError(`${where}: "model.vocab" entries must be [token, score]`);
        return [entry[0], i];
      }),
    );
  }
  const map = new Map<string, number>();
  for (const [token, id] of Object.entries(expectObject(vocab, `${where}: "model.vocab"`))) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0) throw new RlhfError(`${where}: "model.vocab" maps "${token}" to ${JSON.stringify(id)}, not a token id`);
    map.set(token, id);
  }
  return map;
}

function addedTokens(value: unknown, where: string): AddedToken[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new RlhfError(`${where}: "added_tokens" must be a list`);
  return value.map((entry, i) => {
    const e = expectObject(entry, `${where}: "added_tokens"[${i}]`);
    return addedTokenFrom(e, e.id, `${where}: "added_tokens"[${i}]`);
  });
}

function addedTokenFrom(value: unknown, id: unknown, where: string): AddedToken {
  const e = expectObject(value, where);
  if (typeof e.content !== "string" || e.content === "") throw new RlhfError(`${where}: "content" must be a non-empty string`);
  if (typeof id !== "number" || !Number.isInteger(id) || id < 0) throw new RlhfError(`${where}: the id must be a non-negative integer, got ${JSON.stringify(id)}`);
  return {
    id,
    content: e.content,
    single_word: e.single_word === true,
    lstrip: e.lstrip === true,
    rstrip: e.rstrip === true,
    // Rust's default for an added token is normalized = !special.
    normalized: typeof e.normalized === "boolean" ? e.normalized : e.special !== true,
    special: e.special === true,
  };
}

/**
 * The special tokens that surround one encoded sequence, from tokenizer.json's `post_processor`:
 * ids before and after the text's ids. A Sequence applies its processors in turn, so a later one's
 * tokens go outside an earlier one's.
 */
function specialTokenFrame(value: unknown, where: string): { prefix: number[]; suffix: number[] } {
  if (value === undefined || value === null) return { prefix: [], suffix: [] };
  const pp = expectObject(value, `${where}: "post_processor"`);
  switch (pp.type) {
    case "ByteLevel":
      return { prefix: [], suffix: [] };
    case "RobertaProcessing":
    case "BertProcessing": {
      const idOf = (pair: unknown, key: string) => {
        if (!Array.isArray(pair) || typeof pair[1] !== "number") throw new RlhfError(`${where}: post_processor "${key}" must be [token, id]`);
        return pair[1] as number;
      };
      return { prefix: [idOf(pp.cls, "cls")], suffix: [idOf(pp.sep, "sep")] };
    }
    case "TemplateProcessing": {
      const specials = expectObject(pp.special_tokens ?? {}, `${where}: post_processor "special_tokens"`);
      if (!Array.isArray(pp.single)) throw new RlhfError(`${where}: post_processor "single" must be a list`);
      const prefix: number[] = [];
      const suffix: number[] = [];
      let seenSequence = false;
      for (const item of pp.single as unknown[]) {
        const piece = expectObject(item, `${where}: post_processor "single" item`);
        if (piece.Sequence !== undefined) {
          seenSequence = true;
          continue;
        }
        const name = expectObject(piece.SpecialToken, `${where}: post_processor "single" item`).id;
        const special = typeof name === "string" ? specials[name] : undefined;
        const ids = special !== undefined ? expectObject(special, `${where}: post_processor special token "${String(name)}"`).ids : undefined;
        if (!Array.isArray(ids) || !ids.every((id) => typeof id === "number")) {
          throw new RlhfError(`${where}: post_processor names special token ${JSON.stringify(name)} but "special_tokens" gives it no ids`);
        }
        (seenSequence ? suffix : prefix).push(...(ids as number[]));
      }
      return { prefix, suffix };
    }
    case "Sequence": {
      if (!Array.isArray(pp.processors)) throw new RlhfError(`${where}: post_processor "processors" must be a list`);
      let prefix: number[] = [];
      let suffix: number[] = [];
      for (const inner of pp.processors as unknown[]) {
        const frame = specialTokenFrame(inner, where);
        prefix = [...frame.prefix, ...prefix];
        suffix = [...suffix, ...frame.suffix];
      }
      return { prefix, suffix };
    }
    default:
      throw new RlhfError(
        `${where}: post_processor type ${JSON.stringify(pp.type)} is not supported (TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence are)`,
      );
  }
}

/** A special-token value of tokenizer_config.json: a string, an AddedToken object, or null. */
function tokenText(value: unknown, where: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === "string") return value;
  if (typeof value === "object" && !Array.isArray(value) && typeof (value as JsonObject).content === "string") {
    return (value as JsonObject).content as string;
  }
  throw new RlhfError(`${where}: expected a token (a string or {"content": string}), got ${JSON.stringify(value)}`);
}

/** `additional_special_tokens` / `extra_special_tokens`: a list of tokens, or a {name: token} object. */
function tokenList(value: unknown, where: string): string[] {
  if (value === undefined || value === null) return [];
  const entries = Array.isArray(value) ? value : typeof value === "object" ? Object.values(value as JsonObject) : undefined;
  if (entries === undefined) throw new RlhfError(`${where}: additional special tokens must be a list`);
  return entries.map((v) => tokenText(v, `${where}: additional special token`)).filter((t): t is string => t !== null);
}

function expectObject(value: unknown, where: string): JsonObject {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new RlhfError(`${where}: expected a JSON object`);
  }
  return value as JsonObject;
}

function expectOptionalObject(value: unknown, where: string): JsonObject {
  return value === undefined || value === null ? {} : expectObject(value, where);
}
