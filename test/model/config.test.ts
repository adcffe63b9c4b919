import { mkdtempSync, rmSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import { join } from "path";

import { RlhfError } from "../../lib/errors";
import { loadModelConfig, parseModelConfig } from "../../lib/model/config";

// config.json files of released models (the keys that matter, as published on the hub).
const LLAMA_3_2_1B_INSTRUCT = {
  architectures: ["LlamaForCausalLM"], attention_bias: false, attention_dropout: 0.0, bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009], head_dim: 64, hidden_act: "silu", hidden_size: 2048, initializer_range: 0.02,
  intermediate_size: 8192, max_position_embeddings: 131072, mlp_bias: false, model_type: "llama", num_attention_heads: 32,
  num_hidden_layers: 16, num_key_value_heads: 8, pretraining_tp: 1, rms_norm_eps: 1e-5,
  rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: "llama3" },
  rope_theta: 500000.0, tie_word_embeddings: true, torch_dtype: "bfloat16", use_cache: true, vocab_size: 128256,
};
const TINYLLAMA = {
  architectures: ["LlamaForCausalLM"], attention_bias: false, bos_token_id: 1, eos_token_id: 2, hidden_act: "silu",
  hidden_size: 2048, intermediate_size: 5632, max_position_embeddings: 2048, model_type: "llama", num_attention_heads: 32,
  num_hidden_layers: 22, num_key_value_heads: 4, pretraining_tp: 1, rms_norm_eps: 1e-5, rope_scaling: null,
  rope_theta: 10000.0, tie_word_embeddings: false, torch_dtype: "bfloat16", use_cache: true, vocab_size: 32000,
};
const SMOLLM2_135M = {
  architectures: ["LlamaForCausalLM"], attention_bias: false, bos_token_id: 0, eos_token_id: 0, hidden_act: "silu",
  hidden_size: 576, intermediate_size: 1536, is_llama_config: true, max_position_embeddings: 8192, mlp_bias: false,
  model_type: "llama", num_attention_heads: 9, num_hidden_layers: 30, num_key_value_heads: 3, rms_norm_eps: 1e-5,
  rope_interleaved: false, rope_scaling: null, rope_theta: 100000, tie_word_embeddings: true, vocab_size: 49152,
};
const MISTRAL_7B_V01 = {
  architectures: ["MistralForCausalLM"], bos_token_id: 1, eos_token_id: 2, hidden_act: "silu", hidden_size: 4096,
  intermediate_size: 14336, max_position_embeddings: 32768, model_type: "mistral", num_attention_heads: 32,
  num_hidden_layers: 32, num_key_value_heads: 8, rms_norm_eps: 1e-5, rope_theta: 10000.0, sliding_window: 4096,
  tie_word_embeddings: false, vocab_size: 32000,
};
const QWEN2_5_0_5B_INSTRUCT = {
  architectures: ["Qwen2ForCausalLM"], attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151645, hidden_act: "silu",
  hidden_size: 896, intermediate_size: 4864, max_position_embeddings: 32768, max_window_layers: 21, model_type: "qwen2",
  num_attention_heads: 14, num_hidden_layers: 24, num_key_value_heads: 2, rms_norm_eps: 1e-6, rope_theta: 1000000.0,
  sliding_window: 32768, tie_word_embeddings: true, torch_dtype: "bfloat16", use_cache: true, use_sliding_window: false,
  vocab_size: 151936,
};
const QWEN3_0_6B = {
  architectures: ["Qwen3ForCausalLM"], attention_bias: false, attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151645,
  head_dim: 128, hidden_act: "silu", hidden_size: 1024, intermediate_size: 3072, max_position_embeddings: 40960,
  max_window_layers: 28, model_type: "qwen3", num_attention_heads: 16, num_hidden_layers: 28, num_key_value_heads: 8,
  rms_norm_eps: 1e-6, rope_scaling: null, rope_theta: 1000000, sliding_window: null, tie_word_embeddings: true,
  use_cache: true, use_sliding_window: false, vocab_size: 151936,
};

describe("parseModelConfig on released models", () => {
  it("Llama 3.2 1B Instruct: GQA, explicit head_dim, llama3 RoPE scaling, tied, eos list", () => {
    expect(parseModelConfig(LLAMA_3_2_1B_INSTRUCT, "llama/config.json")).toEqual({
      source: "llama/config.json", modelType: "llama", vocabSize: 128256, hiddenSize: 2048, intermediateSize: 8192,
      numLayers: 16, numHeads: 32, numKvHeads: 8, headDim: 64, rmsNormEps: 1e-5,
      rope: {
        theta: 500000,
        scaling: { type: "llama3", factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
      },
      maxPositionEmbeddings: 131072, tieWordEmbeddings: true, bias: { qkv: false, o: false, mlp: false }, qkNorm: false,
      slidingWindow: null, bosTokenId: 128000, eosTokenIds: [128001, 128008, 128009], padTokenId: null,
    });
  });

  it("TinyLlama and SmolLM2: head_dim from hidden_size / heads, rope_scaling null", () => {
    const tiny = parseModelConfig(TINYLLAMA, "t");
    expect([tiny.headDim, tiny.numKvHeads, tiny.rope, tiny.tieWordEmbeddings, tiny.eosTokenIds]).toEqual([64, 4, { theta: 10000 }, false, [2]]);
    const smol = parseModelConfig(SMOLLM2_135M, "s");
    expect([smol.headDim, smol.numKvHeads, smol.rope.theta, smol.tieWordEmbeddings, smol.bosTokenId]).toEqual([64, 3, 100000, true, 0]);
  });

  it("Mistral 7B v0.1 keeps its sliding window; v0.3 has none", () => {
    expect(parseModelConfig(MISTRAL_7B_V01, "m").slidingWindow).toBe(4096);
    expect(parseModelConfig({ ...MISTRAL_7B_V01, sliding_window: null, vocab_size: 32768, rope_theta: 1e6 }, "m").slidingWindow).toBeNull();
    // MistralConfig's defaults: sliding_window 4096 and 8 key/value heads when the keys are absent.
    const bare = parseModelConfig({ model_type: "mistral" }, "m");
    expect([bare.slidingWindow, bare.numKvHeads, bare.maxPositionEmbeddings, bare.bias]).toEqual([4096, 8, 131072, { qkv: false, o: false, mlp: false }]);
  });

  it("Qwen2.5 0.5B: q/k/v biases (not o), the sliding window off without use_sliding_window", () => {
    const q = parseModelConfig(QWEN2_5_0_5B_INSTRUCT, "q");
    expect([q.headDim, q.numKvHeads, q.bias, q.qkNorm, q.slidingWindow, q.tieWordEmbeddings]).toEqual([
      64, 2, { qkv: true, o: false, mlp: false }, false, null, true,
    ]);
    // With use_sliding_window, the layers from max_window_layers on use it (none when ≥ the layer count).
    expect(parseModelConfig({ ...QWEN2_5_0_5B_INSTRUCT, use_sliding_window: true }, "q").slidingWindow).toBe(32768);
    expect(parseModelConfig({ ...QWEN2_5_0_5B_INSTRUCT, use_sliding_window: true, max_window_layers: 24 }, "q").slidingWindow).toBeNull();
    const layerTypes = Array.from({ length: 24 }, (_, i) => (i < 20 ? "full_attention" : "sliding_attention"));
    expect(parseModelConfig({ ...QWEN2_5_0_5B_INSTRUCT, use_sliding_window: true, layer_types: layerTypes }, "q").slidingWindow).toBe(32768);
  });

  it("Qwen3 0.6B: explicit head_dim ≠ hidden/heads, q/k norm, no biases", () => {
    const q = parseModelConfig(QWEN3_0_6B, "q3");
    expect([q.headDim, q.hiddenSize / q.numHeads, q.qkNorm, q.bias, q.slidingWindow, q.eosTokenIds]).toEqual([
      128, 64, true, { qkv: false, o: false, mlp: false }, null, [151645],
    ]);
    // Qwen3Config's default head_dim is 128, whatever hidden_size / heads is.
    expect(parseModelConfig({ model_type: "qwen3", hidden_size: 512, num_attention_heads: 8, num_key_value_heads: 8 }, "q3").headDim).toBe(128);
    expect(parseModelConfig({ ...QWEN3_0_6B, attention_bias: true }, "q3").bias).toEqual({ qkv: true, o: true, mlp: false });
  });

  it("reads transformers v5's rope_parameters (rope_theta inside it)", () => {
    const { rope_scaling: scaling, rope_theta: theta, ...rest } = LLAMA_3_2_1B_INSTRUCT;
    const v5 = { ...rest, rope_parameters: { ...scaling, rope_theta: theta } };
    expect(parseModelConfig(v5, "v5").rope).toEqual(parseModelConfig(LLAMA_3_2_1B_INSTRUCT, "v4").rope);
    expect(parseModelConfig({ ...QWEN3_0_6B, rope_theta: undefined, rope_parameters: { rope_type: "default", rope_theta: 5e6 } }, "v5").rope)
      .toEqual({ theta: 5e6 });
    // The legacy `type` key, and original_max_position_embeddings defaulting to max_position_embeddings.
    const legacy = parseModelConfig({
      model_type: "llama", max_position_embeddings: 4096,
      rope_scaling: { type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4 },
    }, "l");
    expect(legacy.rope.scaling?.originalMaxPositionEmbeddings).toBe(4096);
  });

  it("applies transformers' LlamaConfig defaults to absent keys", () => {
    const c = parseModelConfig({ model_type: "llama" }, "l");
    expect(c).toMatchObject({
      vocabSize: 32000, hiddenSize: 4096, intermediateSize: 11008, numLayers: 32, numHeads: 32, numKvHeads: 32,
      headDim: 128, rmsNormEps: 1e-6, rope: { theta: 10000 }, maxPositionEmbeddings: 2048, tieWordEmbeddings: false,
      bosTokenId: 1, eosTokenIds: [2], padTokenId: null, slidingWindow: null,
    });
    expect(parseModelConfig({ model_type: "llama", num_key_value_heads: null, head_dim: null }, "l")).toMatchObject({ numKvHeads: 32, headDim: 128 });
    expect(parseModelConfig({ model_type: "qwen2", eos_token_id: null }, "q").eosTokenIds).toEqual([]);
    expect(parseModelConfig({ model_type: "llama", hidden_act: "swish" }, "l").modelType).toBe("llama");
  });
});

describe("parseModelConfig rejects what the decoder cannot compute", () => {
  const bad: Array<[string, unknown, RegExp]> = [
    ["a non-object", [1, 2], /m\/config.json: expected a JSON object, got \[1,2\]/],
    ["a missing model_type", { hidden_size: 8 }, /m\/config.json: 'model_type' is missing or not a string \(got nothing\); supported model types: llama, mistral, qwen2, qwen3/],
    ["another architecture", { model_type: "gemma2" }, /m\/config.json: model_type "gemma2" is not supported; supported model types: llama, mistral, qwen2, qwen3/],
    ["a multimodal wrapper", { model_type: "qwen2_5_vl", text_config: {} }, /model_type "qwen2_5_vl" is not supported/],
    ["another activation", { model_type: "llama", hidden_act: "gelu" }, /m\/config.json: 'hidden_act' "gelu" is not supported; the decoder implements "silu" only/],
    ["yarn RoPE", { model_type: "qwen2", rope_scaling: { type: "yarn", factor: 4, original_max_position_embeddings: 32768 } },
      /m\/config.json: 'rope_scaling.type' "yarn" is not supported; supported RoPE types: default, llama3/],
    ["linear RoPE", { model_type: "llama", rope_scaling: { rope_type: "linear", factor: 2 } }, /'rope_scaling.rope_type' "linear" is not supported/],
    ["dynamic RoPE (v5 key)", { model_type: "llama", rope_parameters: { rope_type: "dynamic", factor: 2 } }, /'rope_parameters.rope_type' "dynamic" is not supported/],
    ["llama3 RoPE without low_freq_factor", { model_type: "llama", rope_scaling: { rope_type: "llama3", factor: 8, high_freq_factor: 4 } },
      /m\/config.json: 'rope_scaling.low_freq_factor' must be a number > 0 \(it is required\), got nothing/],
    ["llama3 RoPE with high ≤ low", { model_type: "llama", rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 4, high_freq_factor: 4 } },
      /'rope_scaling.high_freq_factor' must be greater than 'low_freq_factor' \(4\), got 4/],
    ["llama3 RoPE with factor < 1", { model_type: "llama", rope_scaling: { rope_type: "llama3", factor: 0.5, low_freq_factor: 1, high_freq_factor: 4 } },
      /'rope_scaling.factor' must be ≥ 1, got 0.5/],
    ["partial rotary embeddings", { model_type: "llama", partial_rotary_factor: 0.5 }, /'partial_rotary_factor' must be 1 \(partial rotary embeddings are not supported\), got 0.5/],
    ["a quantized model", { model_type: "llama", quantization_config: { quant_method: "awq" } }, /the model is quantized \('quantization_config' is set\)/],
    ["a non-integer size", { model_type: "llama", hidden_size: "2048" }, /m\/config.json: 'hidden_size' must be a positive integer, got "2048"/],
    ["a zero size", { model_type: "qwen3", num_hidden_layers: 0 }, /'num_hidden_layers' must be a positive integer, got 0/],
    ["heads not a multiple of kv heads", { model_type: "llama", num_attention_heads: 12, num_key_value_heads: 5 },
      /'num_attention_heads' \(12\) must be a multiple of 'num_key_value_heads' \(5\)/],
    ["hidden_size not a multiple of heads", { model_type: "llama", hidden_size: 100, num_attention_heads: 8 },
      /'hidden_size' \(100\) must be a multiple of 'num_attention_heads' \(8\) when 'head_dim' is not given/],
    ["an odd head_dim", { model_type: "qwen3", head_dim: 7 }, /'head_dim' must be even \(RoPE rotates pairs of dimensions\), got 7/],
    ["a bad eps", { model_type: "llama", rms_norm_eps: -1 }, /'rms_norm_eps' must be a finite number > 0, got -1/],
    ["a bad eos id", { model_type: "llama", eos_token_id: [2, "x"] }, /'eos_token_id' must be a token id, a list of token ids, or null/],
    ["a bad tie flag", { model_type: "llama", tie_word_embeddings: "yes" }, /'tie_word_embeddings' must be true or false, got "yes"/],
    ["malformed layer_types", { model_type: "qwen2", num_hidden_layers: 2, use_sliding_window: true, layer_types: ["full_attention"] },
      /'layer_types' must be a list of 2 strings \(one per layer\)/],
  ];
  for (const [name, json, message] of bad) {
    it(`rejects ${name}`, () => {
      let thrown: unknown;
      try {
        parseModelConfig(json, "m/config.json");
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(RlhfError);
      expect((thrown as Error).message).toMatch(message);
    });
  }
});

describe("loadModelConfig", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "rlhf-config-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("reads config.json from a model directory or the file itself", () => {
    writeFileSync(join(dir, "config.json"), JSON.stringify(QWEN3_0_6B));
    expect(loadModelConfig(dir)).toMatchObject({ modelType: "qwen3", source: join(dir, "config.json"), headDim: 128 });
    expect(loadModelConfig(join(dir, "config.json")).numLayers).toBe(28);
  });

  it("names the file when it is missing or not JSON", () => {
    expect(() => loadModelConfig(join(dir, "nope"))).toThrow(new RegExp(`model config: ${join(dir, "nope")} does not exist`));
    const empty = mkdtempSync(join(dir, "model-"));
    expect(() => loadModelConfig(empty)).toThrow(new RegExp(`cannot read the model config ${join(empty, "config.json")}`));
    const broken = join(dir, "broken.json");
    writeFileSync(broken, "{ \"model_type\": ");
    expect(() => loadModelConfig(broken)).toThrow(new RegExp(`${broken} is not valid JSON`));
    writeFileSync(broken, JSON.stringify({ model_type: "phi3" }));
    expect(() => loadModelConfig(broken)).toThrow(new RegExp(`${broken}: model_type "phi3" is not supported`));
  });
});
