/**
 * The decoder's parameters: Hugging Face weight names and shapes for a config, loading them through
 * the `(hfName) => Tensor | undefined` contract with shape checks, and the Parameter record that
 * pairs a tensor with its float32 gradient.
 */
import { RlhfError } from "../errors";
import { DType, keep, Tensor, zeros } from "../native";
import type { ModelConfig } from "./config";
import type { LoraTargetModule } from "./lora";

/** A named tensor of the model and, when it trains, its gradient. */
export class Parameter {
  private gradTensor: Tensor | undefined;

  constructor(
    /** Hugging Face name (`model.layers.0.self_attn.q_proj.weight`) or adapter name (lora.ts). */
    readonly name: string,
    /** The tensor the forward reads; the optimizer updates it in place when it trains. */
    readonly value: Tensor,
    readonly trainable: boolean,
  ) {}

  /** The float32 gradient (shape of value), allocated as zeros on first use; gradients accumulate into it. */
  gradient(): Tensor {
    if (!this.trainable) throw new Error(`parameter ${this.name} is frozen: it has no gradient`);
    if (!this.gradTensor) this.gradTensor = keep(zeros("float32", this.value.shape));
    return this.gradTensor;
  }

  /** The gradient if one was allocated. */
  get grad(): Tensor | undefined {
    return this.gradTensor;
  }

  /** Zeroes the gradient (after an optimizer step), keeping its memory. */
  zeroGrad(): void {
    this.gradTensor?.fill(0);
  }

  /** Frees the gradient's memory (it is allocated again by the next gradient()). */
  releaseGrad(): void {
    this.gradTensor?.dispose();
    this.gradTensor = undefined;
  }

  dispose(): void {
    this.releaseGrad();
    this.value.dispose();
  }
}

/** The linear layers of one decoder layer, their HF module group and [out, in] shape. */
export interface LinearSpec {
  module: LoraTargetModule;
  /** `self_attn` or `mlp`. */
  group: "self_attn" | "mlp";
  outFeatures: number;
  inFeatures: number;
  bias: boolean;
}

export function linearSpecs(config: ModelConfig): LinearSpec[] {
  const { hiddenSize: d, intermediateSize: f, numHeads, numKvHeads, headDim, bias } = config;
  const q = numHeads * headDim;
  const kv = numKvHeads * headDim;
  return [
    { module: "q_proj", group: "self_attn", outFeatures: q, inFeatures: d, bias: bias.qkv },
    { module: "k_proj", group: "self_attn", outFeatures: kv, inFeatures: d, bias: bias.qkv },
    { module: "v_proj", group: "self_attn", outFeatures: kv, inFeatures: d, bias: bias.qkv },
    { module: "o_proj", group: "self_attn", outFeatures: d, inFeatures: q, bias: bias.o },
    { module: "gate_proj", group: "mlp", outFeatures: f, inFeatures: d, bias: bias.mlp },
    { module: "up_proj", group: "mlp", outFeatures: f, inFeatures: d, bias: bias.mlp },
    { module: "down_proj", group: "mlp", outFeatures: d, inFeatures: f, bias: bias.mlp },
  ];
}

/** HF names of the decoder's weights. */
export const weightNames = {
  embedTokens: "model.embed_tokens.weight",
  finalNorm: "model.norm.weight",
  lmHead: "lm_head.weight",
  layer: (i: number) => `model.layers.${i}`,
  inputNorm: (i: number) => `model.layers.${i}.input_layernorm.weight`,
  postAttentionNorm: (i: number) => `model.layers.${i}.post_attention_layernorm.weight`,
  qNorm: (i: number) => `model.layers.${i}.self_attn.q_norm.weight`,
  kNorm: (i: number) => `model.layers.${i}.self_attn.k_norm.weight`,
  /** The module path of a linear layer, e.g. `model.layers.3.mlp.down_proj`. */
  linear: (i: number, spec: Pick<LinearSpec, "group" | "module">) => `model.layers.${i}.${spec.group}.${spec.module}`,
};

export interface WeightSpec {
  name: string;
  shape: number[];
}

/**
 * Every weight the decoder reads for `config`, with its shape, in model order (embedding, layers,
 * final norm, lm_head unless tied). Writers of model files and tests can build from it too.
 */
export function weightSpecs(config: ModelConfig): WeightSpec[] {
  const { hiddenSize: d, headDim, vocabSize } = config;
  const specs: WeightSpec[] = [{ name: weightNames.embedTokens, shape: [vocabSize, d] }];
  for (let i = 0; i < config.numLayers; ++i) {
    specs.push({ name: weightNames.inputNorm(i), shape: [d] });
    for (const lin of linearSpecs(config)) {
      const base = weightNames.linear(i, lin);
      specs.push({ name: `${base}.weight`, shape: [lin.outFeatures, lin.inFeatures] });
      if (lin.bias) specs.push({ name: `${base}.bias`, shape: [lin.outFeatures] });
      if (lin.module === "v_proj" && config.qkNorm) {
        specs.push({ name: weightNames.qNorm(i), shape: [headDim] });
        specs.push({ name: weightNames.kNorm(i), shape: [headDim] });
      }
    }
    specs.push({ name: weightNames.postAttentionNorm(i), shape: [d] });
  }
  specs.push({ name: weightNames.finalNorm, shape: [d] });
  if (!config.tieWordEmbeddings) specs.push({ name: weightNames.lmHead, shape: [vocabSize, d] });
  return specs;
}

/**
 * Reads one weight through `getWeight`, checks its shape and returns it in `dtype`. The decoder owns
 * the result: getWeight's tensor is taken over (kept out of any open scope), and disposed here when a
 * conversion replaces it.
 */
export function loadWeight(
  getWeight: (hfName: string) => Tensor | undefined,
  spec: WeightSpec,
  dtype: DType,
  config: ModelConfig,
): Tensor {
  const t = getWeight(spec.name);
  if (!t) {
    throw new RlhfError(
      `weight '${spec.name}' is missing from the model's weights (expected by ${config.source}` +
        `${spec.name === weightNames.lmHead ? ", where tie_word_embeddings is false" : ""})`,
    );
  }
  keep(t);
  const same = t.shape.length === spec.shape.length && t.shape.every((n, i) => n === spec.shape[i]);
  if (!same || t.dtype === "int32") {
    const got = `${t.dtype} [${t.shape.join(", ")}]`;
    t.dispose();
    throw new RlhfError(
      `weight '${spec.name}' is ${got}, expected a float tensor of shape [${spec.shape.join(", ")}] ` +
        `from ${config.source}: the weights and the config.json do not describe the same model`,
    );
  }
  let out = t;
  if (!out.isContiguous) out = replace(out, out.contiguous());
  if (out.dtype !== dtype) out = replace(out, out.to(dtype));
  return out;
}

/** Disposes `old` and keeps its replacement. */
function replace(old: Tensor, replacement: Tensor): Tensor {
  old.dispose();
  return keep(replacement);
}
