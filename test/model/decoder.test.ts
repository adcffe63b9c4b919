import { adamw, floats, logprobGather, logprobGatherBackward, memoryStats, native, scope, tensor } from "../../lib";
import type { Tensor } from "../../lib";
import { RlhfError } from "../../lib/errors";
import { parseModelConfig } from "../../lib/model/config";
import { Decoder, DecoderOptions } from "../../lib/model/decoder";
import type { LoraSettings } from "../../lib/model/lora";
import { Parameter, weightSpecs } from "../../lib/model/params";
import { expectClose } from "../helpers/assert";
import { numericGradient } from "../helpers/gradcheck";
import { Rng } from "../helpers/random";
import {
  HfConfig, randomAdapters, randomWeights, RefBatch, refDims, refHidden, refLmHead, refLogits, RefLora,
  refPositions, refWeightedLogprob, refWeightShape, Weights,
} from "./reference";

// Tiny random models of each family, as config.json objects.
const LLAMA3_GQA: HfConfig = {
  model_type: "llama", vocab_size: 29, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8, rms_norm_eps: 1e-5, rope_theta: 10000,
  // With head_dim 8 the wavelengths 2π/f are 6.3, 63, 628, 6283: below, inside and above [64/4, 64/1],
  // so every branch of the llama3 rescaling is used.
  rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 },
  tie_word_embeddings: false,
};
const LLAMA_TIED: HfConfig = {
  model_type: "llama", vocab_size: 31, hidden_size: 12, intermediate_size: 20, num_hidden_layers: 2,
  num_attention_heads: 3, num_key_value_heads: 3, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: true,
};
const LLAMA_BIASES: HfConfig = {
  model_type: "llama", vocab_size: 23, hidden_size: 16, intermediate_size: 12, num_hidden_layers: 2,
  num_attention_heads: 2, num_key_value_heads: 1, rms_norm_eps: 1e-6, rope_theta: 500000,
  attention_bias: true, mlp_bias: true, tie_word_embeddings: false,
};
const MISTRAL: HfConfig = {
  model_type: "mistral", vocab_size: 27, hidden_size: 16, intermediate_size: 28, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 1, rms_norm_eps: 1e-5, rope_theta: 1000000, sliding_window: 4096,
  tie_word_embeddings: false,
};
const QWEN2: HfConfig = {
  model_type: "qwen2", vocab_size: 33, hidden_size: 16, intermediate_size: 20, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-6, rope_theta: 1000000, tie_word_embeddings: true,
  use_sliding_window: false, sliding_window: 32768, max_window_layers: 2,
};
const QWEN3: HfConfig = {
  model_type: "qwen3", vocab_size: 25, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8, rms_norm_eps: 1e-6, rope_theta: 1000000,
  attention_bias: false, tie_word_embeddings: true, sliding_window: null, use_sliding_window: false,
};

const FAMILIES: Array<[string, HfConfig]> = [
  ["llama, GQA, llama3 RoPE scaling, untied", LLAMA3_GQA],
  ["llama, tied embeddings (SmolLM-like)", LLAMA_TIED],
  ["llama with attention and MLP biases", LLAMA_BIASES],
  ["mistral", MISTRAL],
  ["qwen2 with q/k/v biases", QWEN2],
  ["qwen3 with q/k norm", QWEN3],
];

type Padding = "left" | "right";

/** A batch of 3 rows of T = 6: full length, and 4 and 1 tokens padded on `padding`'s side. */
function makeBatch(c: HfConfig, padding: Padding, rng: Rng): RefBatch {
  const batch = 3;
  const seq = 6;
  const lengths = [6, 4, 1];
  const ids = new Int32Array(batch * seq);
  const mask = new Int32Array(batch * seq);
  for (let b = 0; b < batch; ++b) {
    for (let t = 0; t < seq; ++t) {
      const real = padding === "right" ? t < lengths[b] : t >= seq - lengths[b];
      mask[b * seq + t] = real ? 1 : 0;
      ids[b * seq + t] = real ? rng.int(0, refDims(c).vocab) : 0;
    }
  }
  return { ids, mask, positions: refPositions(mask, batch, seq), batch, seq };
}

/** Next-token targets of each real token followed by a real token; −100 elsewhere. */
function nextTokenTargets(b: RefBatch): Int32Array {
  const out = new Int32Array(b.ids.length).fill(-100);
  for (let r = 0; r < b.batch; ++r) {
    for (let t = 0; t + 1 < b.seq; ++t) {
      const i = r * b.seq + t;
      if (b.mask[i] && b.mask[i + 1]) out[i] = b.ids[i + 1];
    }
  }
  return out;
}

function buildDecoder(c: HfConfig, w: Weights, options: DecoderOptions = {}, adapters?: Weights): Decoder {
  const config = parseModelConfig(c, "test/config.json");
  const decoder = new Decoder(config, (name) => {
    const v = w.get(name);
    return v && tensor("float32", refWeightShape(c, name), v);
  }, options);
  if (adapters) {
    for (const p of decoder.parameters()) {
      const v = adapters.get(p.name);
      if (v) p.value.copyFrom(v);
    }
  }
  return decoder;
}

function batchTensors(b: RefBatch): { inputIds: Tensor; attentionMask: Tensor } {
  return {
    inputIds: tensor("int32", [b.batch, b.seq], b.ids),
    attentionMask: tensor("int32", [b.batch, b.seq], b.mask),
  };
}

/** Rows of a [N, width] array at real (unmasked) tokens. */
function realRows(x: ArrayLike<number>, mask: Int32Array, width: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < mask.length; ++i) if (mask[i]) for (let e = 0; e < width; ++e) out.push(x[i * width + e]);
  return out;
}

function param(decoder: Decoder, name: string): Parameter {
  const p = decoder.parameters().find((q) => q.name === name);
  if (!p) throw new Error(`no parameter ${name}`);
  return p;
}

/**
 * One training step's gradients through logprobGather: L = Σ w·logp over the targets. Returns the
 * loss (float64 sum of the native float32 log-probs).
 */
function lossAndBackward(decoder: Decoder, b: RefBatch, targets: Int32Array, weights: Float64Array): number {
  return scope(() => {
    const { hidden, lmHead, tape } = decoder.forward(batchTensors(b), { saveForBackward: true });
    const t = tensor("int32", [targets.length], targets);
    const { logp, lse } = logprobGather({ hidden, weight: lmHead.value, targets: t });
    const { dHidden } = logprobGatherBackward({
      hidden, weight: lmHead.value, targets: t, lse, dLogp: tensor("float32", [weights.length], weights),
      ...(lmHead.trainable ? { dWeight: lmHead.gradient() } : {}),
    });
    decoder.backward(tape as NonNullable<typeof tape>, dHidden);
    const lp = floats(logp);
    return lp.reduce((s, v, i) => s + v * weights[i], 0);
  });
}

describe("Decoder forward against a float64 reference", () => {
  const rng = new Rng(2024);
  for (const [name, c] of FAMILIES) {
    for (const padding of ["right", "left"] as const) {
      it(`${name}, ${padding} padding: hidden states and logits`, () => {
        const w = randomWeights(c, rng);
        const b = makeBatch(c, padding, rng);
        const { d, vocab } = refDims(c);
        const decoder = buildDecoder(c, w);
        try {
          scope(() => {
            const { hidden, lmHead, tape } = decoder.forward(batchTensors(b));
            expect(tape).toBeUndefined();
            expect(hidden.shape).toEqual([b.batch * b.seq, d]);
            expect(lmHead.value.shape).toEqual([vocab, d]);
            const got = floats(hidden);
            const want = refHidden(c, w, b);
            expectClose(realRows(got, b.mask, d), realRows(want, b.mask, d), { rtol: 1e-4, atol: 1e-4 }, "hidden");
            // logits = hidden · lm_headᵀ, from the decoder's hidden states and its lm_head accessor.
            const n = b.batch * b.seq;
            const gotLogits = refLogits(got, Float64Array.from(floats(lmHead.value)), n, d);
            const wantLogits = refLogits(want, refLmHead(c, w), n, d);
            expectClose(realRows(gotLogits, b.mask, vocab), realRows(wantLogits, b.mask, vocab), { rtol: 2e-4, atol: 2e-4 }, "logits");
          });
        } finally {
          decoder.dispose();
        }
      });
    }
  }

  it("gives a left-padded row the hidden states of the same tokens unpadded", () => {
    const c = QWEN3;
    const w = randomWeights(c, rng);
    const decoder = buildDecoder(c, w);
    try {
      scope(() => {
        const padded = makeBatch(c, "left", rng);
        const d = refDims(c).d;
        const all = floats(decoder.forward(batchTensors(padded)).hidden);
        // Row 1 holds 4 tokens after 2 pads: run them alone, unpadded, with default positions.
        const alone = floats(decoder.forward({ inputIds: tensor("int32", [1, 4], padded.ids.subarray(8, 12)) }).hidden);
        expectClose(all.subarray(8 * d, 12 * d), alone, { rtol: 1e-5, atol: 1e-5 });
      });
    } finally {
      decoder.dispose();
    }
  });

  it("uses explicit positionIds when given", () => {
    const c = LLAMA3_GQA;
    const w = randomWeights(c, rng);
    const decoder = buildDecoder(c, w);
    try {
      scope(() => {
        const b = makeBatch(c, "right", rng);
        b.positions = b.positions.map((p, i) => p + (i % 3) * 5);
        const { hidden } = decoder.forward({ ...batchTensors(b), positionIds: tensor("int32", [b.batch, b.seq], b.positions) });
        const d = refDims(c).d;
        expectClose(realRows(floats(hidden), b.mask, d), realRows(refHidden(c, w, b), b.mask, d), { rtol: 1e-4, atol: 1e-4 });
      });
    } finally {
      decoder.dispose();
    }
  });

  for (const [name, c, useRslora] of [["llama3 GQA", LLAMA3_GQA, false], ["qwen3", QWEN3, true]] as const) {
    it(`${name} with LoRA adapters on every linear layer (rsLoRA ${useRslora}); adapters off = the base model`, () => {
      const w = randomWeights(c, rng);
      const r = 3;
      const modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
      const adapters = randomAdapters(c, r, modules, rng);
      const lora: LoraSettings = { r, alpha: 6, targetLinear: true, useRslora };
      const decoder = buildDecoder(c, w, { lora }, adapters);
      const refLora: RefLora = { adapters, scale: useRslora ? 6 / Math.sqrt(r) : 6 / r };
      try {
        scope(() => {
          const b = makeBatch(c, "left", rng);
          const d = refDims(c).d;
          const on = floats(decoder.forward(batchTensors(b)).hidden);
          const off = floats(decoder.forward(batchTensors(b), { adaptersEnabled: false }).hidden);
          const tol = { rtol: 1e-4, atol: 1e-4 };
          expectClose(realRows(on, b.mask, d), realRows(refHidden(c, w, b, refLora), b.mask, d), tol, "adapters on");
          expectClose(realRows(off, b.mask, d), realRows(refHidden(c, w, b), b.mask, d), tol, "adapters off");
          expect(Math.max(...on.map((v, i) => Math.abs(v - off[i])))).toBeGreaterThan(1e-2);
        });
      } finally {
        decoder.dispose();
      }
    });
  }

  it("initialises adapters so that the adapted model starts equal to the base model", () => {
    const c = MISTRAL;
    const w = randomWeights(c, rng);
    const decoder = buildDecoder(c, w, { lora: { r: 4, alpha: 8, targetModules: ["q_proj", "v_proj"] } });
    try {
      scope(() => {
        const b = makeBatch(c, "right", rng);
        const on = floats(decoder.forward(batchTensors(b)).hidden);
        const off = floats(decoder.forward(batchTensors(b), { adaptersEnabled: false }).hidden);
        expect(Array.from(on)).toEqual(Array.from(off));
        const names = decoder.trainableParameters().map((p) => p.name);
        expect(names).toEqual([
          "model.layers.0.self_attn.q_proj.lora_A.weight", "model.layers.0.self_attn.q_proj.lora_B.weight",
          "model.layers.0.self_attn.v_proj.lora_A.weight", "model.layers.0.self_attn.v_proj.lora_B.weight",
          "model.layers.1.self_attn.q_proj.lora_A.weight", "model.layers.1.self_attn.q_proj.lora_B.weight",
          "model.layers.1.self_attn.v_proj.lora_A.weight", "model.layers.1.self_attn.v_proj.lora_B.weight",
        ]);
        // PEFT's init: A uniform in ±1/√in, B zeros.
        const a = floats(param(decoder, "model.layers.1.self_attn.v_proj.lora_A.weight").value);
        expect(param(decoder, "model.layers.1.self_attn.v_proj.lora_A.weight").value.shape).toEqual([4, 16]);
        expect(Math.max(...a.map(Math.abs))).toBeLessThanOrEqual(1 / 4);
        expect(Math.max(...a.map(Math.abs))).toBeGreaterThan(0.15);
        expect(floats(param(decoder, "model.layers.1.self_attn.v_proj.lora_B.weight").value).every((v) => v === 0)).toBe(true);
        expect(param(decoder, "model.layers.0.self_attn.q_proj.weight").trainable).toBe(false);
      });
    } finally {
      decoder.dispose();
    }
  });
});

describe("Decoder backward against finite differences of the float64 reference", () => {
  const rng = new Rng(77);

  /** Checks the analytic gradient of `name` at `indices` against central differences of L. */
  function checkGradient(
    label: string, analytic: Float32Array, x: Float64Array, indices: number[], loss: () => number, tol = { rtol: 2e-3, atol: 2e-4 },
  ): void {
    const numeric = numericGradient(() => loss(), x, indices, 1e-5);
    expectClose(indices.map((i) => analytic[i]), indices.map((i) => numeric.get(i) as number), tol, label);
  }

  function spread(n: number, count: number): number[] {
    return Array.from({ length: Math.min(n, count) }, (_, j) => Math.floor((j * n) / Math.min(n, count) + (j % 2)) % n);
  }

  for (const [name, c, padding, modules] of [
    ["llama3 GQA, untied, left padding, all linear layers", LLAMA3_GQA, "left", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]],
    ["qwen3 q/k norm, tied, right padding, attention projections", QWEN3, "right", ["q_proj", "k_proj", "v_proj", "o_proj"]],
    ["qwen2 biases, tied, left padding, MLP projections", QWEN2, "left", ["gate_proj", "up_proj", "down_proj"]],
  ] as const) {
    it(`LoRA A and B: ${name}`, () => {
      const w = randomWeights(c, rng);
      const r = 2;
      const adapters = randomAdapters(c, r, modules, rng);
      const lora: LoraSettings = { r, alpha: 3, targetModules: modules };
      const decoder = buildDecoder(c, w, { lora }, adapters);
      try {
        const b = makeBatch(c, padding, rng);
        const targets = nextTokenTargets(b);
        const weights = rng.normals(targets.length);
        const loss = lossAndBackward(decoder, b, targets, weights);
        const refLora = { adapters, scale: 3 / r };
        const refLoss = () => {
          const h = refHidden(c, w, b, refLora);
          return refWeightedLogprob(refLogits(h, refLmHead(c, w), b.batch * b.seq, refDims(c).d), refDims(c).vocab, targets, weights);
        };
        expect(Math.abs(loss - refLoss())).toBeLessThan(1e-3 * Math.max(1, Math.abs(loss)));
        // Base weights are frozen: no gradient is ever allocated for them.
        expect(decoder.parameters().filter((p) => p.grad !== undefined).every((p) => p.name.includes(".lora_"))).toBe(true);
        for (const layer of [0, 1]) {
          for (const module of [modules[0], modules[modules.length - 1]]) {
            const group = ["gate_proj", "up_proj", "down_proj"].includes(module) ? "mlp" : "self_attn";
            for (const ab of ["lora_A", "lora_B"]) {
              const pname = `model.layers.${layer}.${group}.${module}.${ab}.weight`;
              const x = adapters.get(pname) as Float64Array;
              checkGradient(pname, floats(param(decoder, pname).gradient()), x, spread(x.length, 10), refLoss);
            }
          }
        }
      } finally {
        decoder.dispose();
      }
    });
  }

  for (const [name, c] of [["qwen2 with biases, tied", QWEN2], ["qwen3 q/k norm, tied", QWEN3], ["llama3 GQA, untied", LLAMA3_GQA]] as const) {
    it(`full fine-tuning, base weights and input embeddings: ${name}`, () => {
      const w = randomWeights(c, rng);
      const decoder = buildDecoder(c, w);
      try {
        const b = makeBatch(c, "left", rng);
        const targets = nextTokenTargets(b);
        const weights = rng.normals(targets.length);
        lossAndBackward(decoder, b, targets, weights);
        const refLoss = () => {
          const h = refHidden(c, w, b);
          return refWeightedLogprob(refLogits(h, refLmHead(c, w), b.batch * b.seq, refDims(c).d), refDims(c).vocab, targets, weights);
        };
        const { d } = refDims(c);
        // The embedding rows of two input tokens (with tied embeddings their lm_head use adds in).
        const rows = [b.ids[0], b.ids[b.seq + 4]];
        const embedIdx = rows.flatMap((row) => [0, 3, d - 1].map((e) => row * d + e));
        const names = [
          "model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight",
          "model.layers.0.input_layernorm.weight", "model.layers.1.post_attention_layernorm.weight", "model.norm.weight",
          ...(c === QWEN2 ? ["model.layers.0.self_attn.k_proj.bias"] : []),
          ...(c === QWEN3 ? ["model.layers.1.self_attn.q_norm.weight", "model.layers.0.self_attn.k_norm.weight"] : []),
          ...(c === LLAMA3_GQA ? ["lm_head.weight"] : []),
        ];
        checkGradient("embed_tokens", floats(param(decoder, "model.embed_tokens.weight").gradient()), w.get("model.embed_tokens.weight") as Float64Array, embedIdx, refLoss);
        for (const pname of names) {
          const x = w.get(pname) as Float64Array;
          checkGradient(pname, floats(param(decoder, pname).gradient()), x, spread(x.length, 8), refLoss);
        }
      } finally {
        decoder.dispose();
      }
    });
  }
});

describe("Decoder training behaviour", () => {
  const rng = new Rng(5);

  function gradients(decoder: Decoder): Map<string, Float32Array> {
    return new Map(decoder.trainableParameters().map((p) => [p.name, floats(p.gradient())]));
  }

  for (const [name, options] of [
    ["LoRA with dropout", { lora: { r: 2, alpha: 4, dropout: 0.25, targetLinear: true, seed: 3 } }],
    ["full fine-tuning", {}],
  ] as const) {
    it(`gradient checkpointing gives the gradients of storing activations: ${name}`, () => {
      const c = QWEN3;
      const w = randomWeights(c, rng);
      const adapters = randomAdapters(c, 2, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], rng);
      const stored = buildDecoder(c, w, options, adapters);
      const recomputed = buildDecoder(c, w, { ...options, gradientCheckpointing: true }, adapters);
      try {
        const b = makeBatch(c, "left", rng);
        const targets = nextTokenTargets(b);
        const weights = rng.normals(targets.length);
        const l1 = lossAndBackward(stored, b, targets, weights);
        const l2 = lossAndBackward(recomputed, b, targets, weights);
        expect(l2).toBe(l1);
        const g1 = gradients(stored);
        const g2 = gradients(recomputed);
        expect([...g2.keys()]).toEqual([...g1.keys()]);
        for (const [k, v] of g1) expectClose(g2.get(k) as Float32Array, v, { rtol: 1e-6, atol: 1e-9 }, k);
      } finally {
        stored.dispose();
        recomputed.dispose();
      }
    });
  }

  it("applies LoRA dropout in training forwards only, with a new mask each pass", () => {
    const c = LLAMA3_GQA;
    const w = randomWeights(c, rng);
    const adapters = randomAdapters(c, 2, ["q_proj", "v_proj", "down_proj"], rng);
    const decoder = buildDecoder(c, w, { lora: { r: 2, alpha: 4, dropout: 0.5, targetModules: ["q_proj", "v_proj", "down_proj"] } }, adapters);
    try {
      scope(() => {
        const b = batchTensors(makeBatch(c, "right", rng));
        const evalA = floats(decoder.forward(b).hidden);
        const evalB = floats(decoder.forward(b).hidden);
        const train1 = decoder.forward(b, { saveForBackward: true });
        const train2 = floats(decoder.forward(b, { dropout: true }).hidden);
        train1.tape?.dispose();
        expect(Array.from(evalB)).toEqual(Array.from(evalA));
        expect(Array.from(floats(train1.hidden))).not.toEqual(Array.from(evalA));
        expect(Array.from(train2)).not.toEqual(Array.from(floats(train1.hidden)));
      });
    } finally {
      decoder.dispose();
    }
  });

  for (const [name, options] of [
    ["LoRA", { lora: { r: 4, alpha: 8, dropout: 0.1, targetLinear: true } }],
    ["full fine-tuning with gradient checkpointing", { gradientCheckpointing: true }],
  ] as const) {
    it(`does not grow native memory over training steps: ${name}`, () => {
      const c = LLAMA3_GQA;
      const w = randomWeights(c, rng);
      const decoder = buildDecoder(c, w, options);
      const params = decoder.trainableParameters();
      const m = params.map((p) => tensor("float32", p.value.shape));
      const v = params.map((p) => tensor("float32", p.value.shape));
      const b = makeBatch(c, "left", rng);
      const targets = nextTokenTargets(b);
      const weights = rng.normals(targets.length);
      const step = (t: number): void => {
        decoder.zeroGrad();
        lossAndBackward(decoder, b, targets, weights);
        adamw({ params: params.map((p) => p.value), grads: params.map((p) => p.gradient()), m, v, lr: 1e-3, step: t });
      };
      try {
        step(1);
        const live = memoryStats().liveBytes;
        for (let t = 2; t <= 5; ++t) {
          step(t);
          expect(memoryStats().liveBytes).toBe(live);
        }
        // The forward alone keeps only its output.
        scope(() => {
          const before = memoryStats().liveBytes;
          const { hidden } = decoder.forward(batchTensors(b));
          expect(memoryStats().liveBytes - before).toBe(hidden.byteLength + 2 * b.ids.length * 4);
        });
        expect(memoryStats().liveBytes).toBe(live);
      } finally {
        [...m, ...v].forEach((t) => t.dispose());
        decoder.dispose();
      }
    });
  }

  it("frees everything it owns on dispose, and a tape that is never backpropagated", () => {
    const before = memoryStats().liveBytes;
    const c = QWEN2;
    const decoder = buildDecoder(c, randomWeights(c, rng), { lora: { r: 2, alpha: 2, targetLinear: true } });
    scope(() => {
      const out = decoder.forward(batchTensors(makeBatch(c, "right", rng)), { saveForBackward: true });
      out.tape?.dispose();
      expect(out.tape?.disposed).toBe(true);
    });
    decoder.dispose();
    expect(memoryStats().liveBytes).toBe(before);
  });
});

describe("Decoder errors", () => {
  const rng = new Rng(9);
  const c = LLAMA3_GQA;
  const config = parseModelConfig(c, "/models/tiny/config.json");

  function getter(w: Weights, override: Record<string, number[] | null> = {}) {
    return (name: string): Tensor | undefined => {
      if (name in override) {
        const shape = override[name];
        return shape ? tensor("float32", shape) : undefined;
      }
      const v = w.get(name);
      return v && tensor("float32", refWeightShape(c, name), v);
    };
  }

  it("names a missing weight, and the lm_head when embeddings are not tied", () => {
    const w = randomWeights(c, rng);
    const before = memoryStats().liveBytes;
    expect(() => new Decoder(config, getter(w, { "model.layers.1.mlp.up_proj.weight": null })))
      .toThrow(/weight 'model.layers.1.mlp.up_proj.weight' is missing from the model's weights \(expected by \/models\/tiny\/config.json\)/);
    expect(() => new Decoder(config, getter(w, { "lm_head.weight": null })))
      .toThrow(/'lm_head.weight' is missing .*tie_word_embeddings is false/);
    // What was loaded before the failure is freed.
    expect(memoryStats().liveBytes).toBe(before);
  });

  it("names a misshapen weight with both shapes", () => {
    const w = randomWeights(c, rng);
    expect(() => new Decoder(config, getter(w, { "model.layers.0.self_attn.k_proj.weight": [32, 16] })))
      .toThrow(/weight 'model.layers.0.self_attn.k_proj.weight' is float32 \[32, 16\], expected a float tensor of shape \[16, 16\] from \/models\/tiny\/config.json/);
    expect(() => new Decoder(config, (name) => (name === "model.embed_tokens.weight" ? tensor("int32", [29, 16]) : undefined)))
      .toThrow(RlhfError);
  });

  it("rejects bad LoRA settings and bfloat16 full fine-tuning", () => {
    const w = randomWeights(c, rng);
    const bad: Array<[LoraSettings, RegExp]> = [
      [{ r: 0, alpha: 1, targetLinear: true }, /lora_r must be an integer ≥ 1, got 0/],
      [{ r: 2, alpha: NaN, targetLinear: true }, /lora_alpha must be a finite number/],
      [{ r: 2, alpha: 1, dropout: 1, targetLinear: true }, /lora_dropout must be a number in \[0, 1\), got 1/],
      [{ r: 2, alpha: 1, targetModules: ["qkv_proj"] }, /"qkv_proj" is not a linear layer of this decoder; choose from q_proj, k_proj/],
      [{ r: 2, alpha: 1 }, /LoRA needs target modules/],
    ];
    for (const [lora, message] of bad) expect(() => new Decoder(config, getter(w), { lora })).toThrow(message);
    expect(() => new Decoder(config, getter(w), { dtype: "bfloat16" })).toThrow(/full fine-tuning trains float32 weights/);
    if (native().backend === "cpu") {
      expect(() => new Decoder(config, getter(w), { dtype: "bfloat16", lora: { r: 2, alpha: 2, targetLinear: true } }))
        .toThrow(/dtype "bfloat16" needs the CUDA backend; the cpu backend computes in float32/);
    }
  });

  it("refuses sequences longer than a sliding window", () => {
    const m = { ...MISTRAL, sliding_window: 4 };
    const decoder = buildDecoder(m, randomWeights(m, rng));
    try {
      scope(() => {
        expect(() => decoder.forward({ inputIds: tensor("int32", [1, 5]) }))
          .toThrow(/sequences of 5 tokens are longer than the model's sliding_window \(4, test\/config.json\)/);
        expect(decoder.forward({ inputIds: tensor("int32", [1, 4]) }).hidden.shape).toEqual([4, 16]);
      });
    } finally {
      decoder.dispose();
    }
  });

  it("rejects malformed batches and misused tapes", () => {
    const decoder = buildDecoder(c, randomWeights(c, rng));
    const other = buildDecoder(c, randomWeights(c, rng));
    try {
      scope(() => {
        expect(() => decoder.forward({ inputIds: tensor("float32", [1, 3]) })).toThrow(/inputIds must be int32 \[B, T\]/);
        expect(() => decoder.forward({ inputIds: tensor("int32", [3]) })).toThrow(/inputIds must be int32 \[B, T\]/);
        expect(() => decoder.forward({ inputIds: tensor("int32", [2, 3]), attentionMask: tensor("int32", [2, 4]) }))
          .toThrow(/attentionMask must be int32 \[2, 3\] like inputIds, got int32 \[2, 4\]/);
        expect(() => decoder.forward({ inputIds: tensor("int32", [1, 2], [0, 29]) })).toThrow(/29/);
        const { hidden, tape } = decoder.forward({ inputIds: tensor("int32", [1, 3]) }, { saveForBackward: true });
        const t = tape as NonNullable<typeof tape>;
        expect(() => other.backward(t, hidden)).toThrow(/the tape comes from another decoder/);
        expect(() => decoder.backward(t, tensor("float32", [3, 8]))).toThrow(/dHidden must be float32 \[3, 16\], got float32 \[3, 8\]/);
        decoder.backward(t, hidden);
        expect(() => decoder.backward(t, hidden)).toThrow(/already used or disposed/);
      });
    } finally {
      decoder.dispose();
      other.dispose();
    }
  });

  it("lists every weight with its shape in model order", () => {
    const names = weightSpecs(parseModelConfig(QWEN3, "q3")).map((s) => `${s.name} [${s.shape.join(", ")}]`);
    expect(names.slice(0, 14)).toEqual([
      "model.embed_tokens.weight [25, 16]",
      "model.layers.0.input_layernorm.weight [16]",
      "model.layers.0.self_attn.q_proj.weight [32, 16]",
      "model.layers.0.self_attn.k_proj.weight [16, 16]",
      "model.layers.0.self_attn.v_proj.weight [16, 16]",
      "model.layers.0.self_attn.q_norm.weight [8]",
      "model.layers.0.self_attn.k_norm.weight [8]",
      "model.layers.0.self_attn.o_proj.weight [16, 32]",
      "model.layers.0.mlp.gate_proj.weight [24, 16]",
      "model.layers.0.mlp.up_proj.weight [24, 16]",
      "model.layers.0.mlp.down_proj.weight [16, 24]",
      "model.layers.0.post_attention_layernorm.weight [16]",
      "model.layers.1.input_layernorm.weight [16]",
      "model.layers.1.self_attn.q_proj.weight [32, 16]",
    ]);
    expect(names[names.length - 1]).toBe("model.norm.weight [16]");
    const qwen2 = weightSpecs(parseModelConfig(QWEN2, "q2")).map((s) => s.name);
    expect(qwen2.filter((n) => n.startsWith("model.layers.0.") && n.endsWith(".bias"))).toEqual([
      "model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.k_proj.bias", "model.layers.0.self_attn.v_proj.bias",
    ]);
    expect(weightSpecs(parseModelConfig(LLAMA3_GQA, "l")).map((s) => s.name)).toContain("lm_head.weight");
  });
});
