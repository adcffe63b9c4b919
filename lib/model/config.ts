/**
 * A Hugging Face `config.json` read into the typed ModelConfig the decoder is built from.
 *
 * Supported: model_type "llama" (Llama 2/3/3.1/3.2, TinyLlama, SmolLM), "mistral", "qwen2"
 * (Qwen2/2.5) and "qwen3". Keys and defaults follow transformers' LlamaConfig, MistralConfig,
 * Qwen2Config and Qwen3Config (v4 and v5): a key absent from the file takes transformers' default
 * for that family, so a file reads exactly as transformers would read it. RoPE parameters are read
 * from `rope_scaling` (v4) or `rope_parameters` (v5), `rope_theta` from that object or the top level.
 *
 * Whatever the decoder cannot compute as transformers would (another architecture, activation or
 * RoPE type, partial rotary embeddings, quantized weights) is an RlhfError naming the file and key.
 * Ignored on purpose: `attention_dropout` (TRL's trainers disable dropout in the model), and
 * `pretraining_tp`, `use_cache`, `initializer_range`, `torch_dtype`/`dtype`, which do not change
 * what the model computes in training.
 */
import { readFileSync, statSync } from "fs";
import { join } from "path";

import { RlhfError } from "../errors";
import type { Llama3RopeScaling } from "../native";

export const SUPPORTED_MODEL_TYPES = ["llama", "mistral", "qwen2", "qwen3"] as const;
export type ModelType = (typeof SUPPORTED_MODEL_TYPES)[number];

export interface RopeConfig {
  /** `rope_theta`. */
  theta: number;
  /** `rope_scaling` with rope_type "llama3"; absent for default RoPE. */
  scaling?: Llama3RopeScaling;
}

export interface ModelConfig {
  /** The file this was read from (for messages). */
  readonly source: string;
  readonly modelType: ModelType;
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly rmsNormEps: number;
  readonly rope: RopeConfig;
  readonly maxPositionEmbeddings: number;
  readonly tieWordEmbeddings: boolean;
  /** Which linear layers have a bias: q/k/v, o, and the MLP's gate/up/down. */
  readonly bias: { readonly qkv: boolean; readonly o: boolean; readonly mlp: boolean };
  /** Qwen3: RMSNorm over each head of q and k (weights q_norm, k_norm [head_dim]) before RoPE. */
  readonly qkNorm: boolean;
  /**
   * Sliding-window attention: a query sees at most this many keys (itself included) in the layers
   * that use it; null when no layer does. The decoder computes full causal attention, which equals
   * it while sequences are no longer than the window, and refuses longer ones.
   */
  readonly slidingWindow: number | null;
  readonly bosTokenId: number | null;
  /** `eos_token_id`, a number or a list in the file. */
  readonly eosTokenIds: number[];
  readonly padTokenId: number | null;
}

/** transformers' per-family defaults for keys a config.json may omit. */
interface FamilyDefaults {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  /** null: num_attention_heads. */
  numKvHeads: number | null;
  /** null: hidden_size / num_attention_heads. */
  headDim: number | null;
  maxPositionEmbeddings: number;
  bosTokenId: number | null;
  eosTokenId: number | null;
}

const DEFAULTS: Record<ModelType, FamilyDefaults> = {
  llama: {
    vocabSize: 32000, hiddenSize: 4096, intermediateSize: 11008, numLayers: 32, numHeads: 32, numKvHeads: null,
    headDim: null, maxPositionEmbeddings: 2048, bosTokenId: 1, eosTokenId: 2,
  },
  mistral: {
    vocabSize: 32000, hiddenSize: 4096, intermediateSize: 14336, numLayers: 32, numHeads: 32, numKvHeads: 8,
    headDim: null, maxPositionEmbeddings: 4096 * 32, bosTokenId: 1, eosTokenId: 2,
  },
  qwen2: {
    vocabSize: 151936, hiddenSize: 4096, intermediateSize: 22016, numLayers: 32, numHeads: 32, numKvHeads: 32,
    headDim: null, maxPositionEmbeddings: 32768, bosTokenId: null, eosTokenId: null,
  },
  qwen3: {
    vocabSize: 151936, hiddenSize: 4096, intermediateSize: 22016, numLayers: 32, numHeads: 32, numKvHeads: 32,
    headDim: 128, maxPositionEmbeddings: 32768, bosTokenId: null, eosTokenId: null,
  },
};

const DEFAULT_ROPE_THETA = 10000;
const DEFAULT_RMS_NORM_EPS = 1e-6;
const DEFAULT_SLIDING_WINDOW = 4096;
const DEFAULT_MAX_WINDOW_LAYERS = 28;
/** transformers' ACT2FN maps both names to the same SiLU. */
const SILU_NAMES = ["silu", "swish"];

type Json = Record<string, unknown>;

/** Reads typed keys of one JSON object, failing with the file, the key and what was expected. */
class KeyReader {
  constructor(
    private readonly obj: Json,
    private readonly file: string,
    /** Prefix for nested objects, e.g. "rope_scaling.". */
    private readonly path = "",
  ) {}

  fail(key: string, expected: string): never {
    throw new RlhfError(`${this.file}: '${this.path}${key}' must be ${expected}, got ${describe(this.obj[key])}`);
  }

  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }

  positiveInt(key: string, fallback: number): number {
    if (!this.has(key)) return fallback;
    const v = this.obj[key];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1) this.fail(key, "a positive integer");
    return v;
  }

  positiveNumber(key: string, fallback?: number): number {
    if (!this.has(key)) {
      if (fallback === undefined) this.fail(key, "a number > 0 (it is required)");
      return fallback;
    }
    const v = this.obj[key];
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) this.fail(key, "a finite number > 0");
    return v;
  }

  boolean(key: string, fallback: boolean): boolean {
    if (!this.has(key)) return fallback;
    const v = this.obj[key];
    if (typeof v !== "boolean") this.fail(key, "true or false");
    return v;
  }

  string(key: string, fallback: string): string {
    if (!this.has(key)) return fallback;
    const v = this.obj[key];
    if (typeof v !== "string") this.fail(key, "a string");
    return v;
  }

  /** A token id (integer ≥ 0) or null. */
  tokenId(key: string, fallback: number | null): number | null {
    if (this.obj[key] === null) return null;
    if (this.obj[key] === undefined) return fallback;
    const v = this.obj[key];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) this.fail(key, "a token id (an integer ≥ 0) or null");
    return v;
  }

  /** A token id, a list of them, or null (→ []). */
  tokenIds(key: string, fallback: number | null): number[] {
    const v = this.obj[key];
    if (Array.isArray(v)) {
      if (!v.every((x) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0)) {
        this.fail(key, "a token id, a list of token ids, or null");
      }
      return v as number[];
    }
    const id = this.tokenId(key, fallback);
    return id === null ? [] : [id];
  }

  /** A nested object, or undefined when absent/null. */
  object(key: string): Json | undefined {
    if (!this.has(key)) return undefined;
    const v = this.obj[key];
    if (!isObject(v)) this.fail(key, "an object");
    return v;
  }
}

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  const s = JSON.stringify(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/**
 * Parses the object of a config.json. `source` names the file in messages.
 */
export function parseModelConfig(json: unknown, source: string): ModelConfig {
  if (!isObject(json)) throw new RlhfError(`${source}: expected a JSON object, got ${describe(json)}`);
  const r = new KeyReader(json, source);
  const modelType = json.model_type;
  if (typeof modelType !== "string") {
    throw new RlhfError(
      `${source}: 'model_type' is missing or not a string (got ${describe(modelType)}); ` +
        `supported model types: ${SUPPORTED_MODEL_TYPES.join(", ")}`,
    );
  }
  if (!(SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType)) {
    throw new RlhfError(
      `${source}: model_type "${modelType}" is not supported; supported model types: ${SUPPORTED_MODEL_TYPES.join(", ")}`,
    );
  }
  const type = modelType as ModelType;
  const d = DEFAULTS[type];

  if (r.has("quantization_config")) {
    throw new RlhfError(
      `${source}: the model is quantized ('quantization_config' is set); rlhf-native trains unquantized ` +
        "float32/bfloat16 weights: use the original (unquantized) model",
    );
  }
  const act = r.string("hidden_act", "silu");
  if (!SILU_NAMES.includes(act)) {
    throw new RlhfError(`${source}: 'hidden_act' "${act}" is not supported; the decoder implements "silu" only`);
  }

  const hiddenSize = r.positiveInt("hidden_size", d.hiddenSize);
  const numHeads = r.positiveInt("num_attention_heads", d.numHeads);
  const numKvHeads = r.positiveInt("num_key_value_heads", d.numKvHeads ?? numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new RlhfError(
      `${source}: 'num_attention_heads' (${numHeads}) must be a multiple of 'num_key_value_heads' (${numKvHeads})`,
    );
  }
  const defaultHeadDim = d.headDim ?? hiddenSize / numHeads;
  if (!r.has("head_dim") && !Number.isInteger(defaultHeadDim)) {
    throw new RlhfError(
      `${source}: 'hidden_size' (${hiddenSize}) must be a multiple of 'num_attention_heads' (${numHeads}) ` +
        "when 'head_dim' is not given",
    );
  }
  const headDim = r.positiveInt("head_dim", defaultHeadDim);
  if (headDim % 2 !== 0) r.fail("head_dim", "even (RoPE rotates pairs of dimensions)");
  const numLayers = r.positiveInt("num_hidden_layers", d.numLayers);
  const maxPositionEmbeddings = r.positiveInt("max_position_embeddings", d.maxPositionEmbeddings);

  // Which projections carry a bias in each family's modeling file.
  const attentionBias = type === "llama" || type === "qwen3" ? r.boolean("attention_bias", false) : false;
  const bias = {
    qkv: type === "qwen2" || attentionBias,
    o: attentionBias,
    mlp: type === "llama" ? r.boolean("mlp_bias", false) : false,
  };

  return {
    source,
    modelType: type,
    vocabSize: r.positiveInt("vocab_size", d.vocabSize),
    hiddenSize,
    intermediateSize: r.positiveInt("intermediate_size", d.intermediateSize),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: r.positiveNumber("rms_norm_eps", DEFAULT_RMS_NORM_EPS),
    rope: parseRope(json, r, source, maxPositionEmbeddings),
    maxPositionEmbeddings,
    tieWordEmbeddings: r.boolean("tie_word_embeddings", false),
    bias,
    qkNorm: type === "qwen3",
    slidingWindow: parseSlidingWindow(type, json, r, numLayers),
    bosTokenId: r.tokenId("bos_token_id", d.bosTokenId),
    eosTokenIds: r.tokenIds("eos_token_id", d.eosTokenId),
    padTokenId: r.tokenId("pad_token_id", null),
  };
}

/** rope_theta and rope_scaling / rope_parameters, as transformers standardizes them. */
function parseRope(json: Json, r: KeyReader, source: string, maxPositionEmbeddings: number): RopeConfig {
  if (r.has("partial_rotary_factor") && json.partial_rotary_factor !== 1) {
    r.fail("partial_rotary_factor", "1 (partial rotary embeddings are not supported)");
  }
  // transformers v5: `rope_scaling` in a file takes priority over `rope_parameters`.
  const key = r.has("rope_scaling") ? "rope_scaling" : "rope_parameters";
  const params = r.object(key);
  if (!params) return { theta: r.positiveNumber("rope_theta", DEFAULT_ROPE_THETA) };
  const p = new KeyReader(params, source, `${key}.`);
  if (p.has("partial_rotary_factor") && params.partial_rotary_factor !== 1) {
    p.fail("partial_rotary_factor", "1 (partial rotary embeddings are not supported)");
  }
  const theta = p.has("rope_theta") ? p.positiveNumber("rope_theta") : r.positiveNumber("rope_theta", DEFAULT_ROPE_THETA);
  const typeKey = p.has("rope_type") ? "rope_type" : "type";
  const ropeType = p.string(typeKey, "default");
  if (ropeType === "default") return { theta };
  if (ropeType !== "llama3") {
    throw new RlhfError(
      `${source}: '${key}.${typeKey}' "${ropeType}" is not supported; supported RoPE types: default, llama3`,
    );
  }
  const lowFreqFactor = p.positiveNumber("low_freq_factor");
  const highFreqFactor = p.positiveNumber("high_freq_factor");
  if (highFreqFactor <= lowFreqFactor) {
    p.fail("high_freq_factor", `greater than 'low_freq_factor' (${lowFreqFactor})`);
  }
  const factor = p.positiveNumber("factor");
  if (factor < 1) p.fail("factor", "≥ 1");
  // v5 moves a top-level original_max_position_embeddings into the RoPE parameters, else uses
  // max_position_embeddings.
  const originalMax = p.has("original_max_position_embeddings")
    ? p.positiveInt("original_max_position_embeddings", 0)
    : r.positiveInt("original_max_position_embeddings", maxPositionEmbeddings);
  return {
    theta,
    scaling: { type: "llama3", factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: originalMax },
  };
}

/**
 * Mistral applies `sliding_window` (default 4096; null disables it) to every layer. Qwen2/Qwen3 apply
 * it only with `use_sliding_window`, to the layers marked "sliding_attention" in `layer_types`, or
 * else to layers ≥ `max_window_layers`. Llama has none.
 */
function parseSlidingWindow(type: ModelType, json: Json, r: KeyReader, numLayers: number): number | null {
  if (type === "llama") return null;
  if (json.sliding_window === null) return null;
  const window = r.positiveInt("sliding_window", DEFAULT_SLIDING_WINDOW);
  if (type === "mistral") return window;
  if (!r.boolean("use_sliding_window", false)) return null;
  const layerTypes = json.layer_types;
  if (layerTypes !== undefined && layerTypes !== null) {
    if (!Array.isArray(layerTypes) || layerTypes.length !== numLayers || !layerTypes.every((t) => typeof t === "string")) {
      r.fail("layer_types", `a list of ${numLayers} strings (one per layer)`);
    }
    return layerTypes.includes("sliding_attention") ? window : null;
  }
  return r.positiveInt("max_window_layers", DEFAULT_MAX_WINDOW_LAYERS) < numLayers ? window : null;
}

/**
 * Reads and parses `config.json` from a model directory (or the path of the file itself).
 */
export function loadModelConfig(path: string): ModelConfig {
  let file = path;
  try {
    if (statSync(path).isDirectory()) file = join(path, "config.json");
  } catch {
    throw new RlhfError(`model config: ${path} does not exist`);
  }
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new RlhfError(`cannot read the model config ${file}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new RlhfError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  return parseModelConfig(json, file);
}
