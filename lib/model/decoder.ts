/**
 * The Llama-family decoder (llama, mistral, qwen2, qwen3) over the native ops: forward to the final
 * normed hidden states and a hand-written backward through every op (as llm.c does), with LoRA
 * adapters or full fine-tuning.
 *
 * One layer, x [N, D] with N = B·T tokens:
 *   n1 = RMSNorm(x)                        input_layernorm
 *   q, k, v = Linear(n1) (+ LoRA)          q_proj, k_proj, v_proj (biases for qwen2)
 *   q, k = RMSNorm per head (qwen3)        q_norm, k_norm
 *   q, k = RoPE(q, k, positions)           default or llama3-scaled frequencies
 *   a = causal GQA attention(q, k, v, key mask)
 *   h = x + Linear(a)                      o_proj
 *   n2 = RMSNorm(h)                        post_attention_layernorm
 *   out = h + Linear(silu(Linear(n2)) · Linear(n2))   down(silu(gate) · up)
 * then the final RMSNorm (model.norm). The lm_head is the caller's (logprobGather reads it chunk by
 * chunk, so the [N, vocab] logits never exist): `lmHead` is embed_tokens when tied.
 *
 * What the backward needs is kept per layer (x, h, the roped q and k, v, the attention output and
 * its logsumexp, gate, up, the adapters' x·Aᵀ; qwen3 also q and k before their norm); the norms'
 * outputs and silu(gate)·up are recomputed there instead of stored. With gradient checkpointing only
 * each layer's input is kept and the layer's forward runs again during the backward.
 *
 * Memory is explicit: kept activations live on a DecoderTape until backward() (or tape.dispose())
 * frees them; every temporary is freed by a scope as soon as its layer is done.
 */
import { RlhfError } from "../errors";
import {
  addInto,
  attention,
  AttentionResult,
  attentionBackward,
  embedding,
  embeddingBackward,
  ints,
  keep,
  lora,
  loraBackward,
  native,
  rmsNorm,
  rmsNormBackward,
  rope,
  ropeBackward,
  ropeFrequencies,
  scope,
  siluMul,
  siluMulBackward,
  tensor,
  Tensor,
} from "../native";
import type { ModelConfig } from "./config";
import { dropoutSeed, initialLoraA, LoraSettings, LoraTargetModule, loraParameterNames, ResolvedLora, resolveLora } from "./lora";
import { LinearSpec, linearSpecs, loadWeight, Parameter, weightNames, weightSpecs } from "./params";

/** The dtype of weights and activations: bfloat16 needs the CUDA backend (and LoRA). */
export type ComputeDType = "float32" | "bfloat16";

export interface DecoderOptions {
  /** Train LoRA adapters only (base weights frozen). Omitted: full fine-tuning of every weight. */
  lora?: LoraSettings;
  /** Keep only each layer's input for the backward and recompute the layer there. */
  gradientCheckpointing?: boolean;
  /**
   * Weights and activations (default float32). bfloat16 runs on the CUDA backend with LoRA (the
   * adapters and every gradient stay float32); full fine-tuning trains float32 weights.
   */
  dtype?: ComputeDType;
}

export interface DecoderBatch {
  /** int32 [B, T]. */
  inputIds: Tensor;
  /** int32 [B, T]: 1 = token, 0 = padding (left or right). Omitted: no padding. */
  attentionMask?: Tensor;
  /**
   * int32 [B, T], each ≥ 0. Default, as transformers' generate() computes them: the running count
   * of tokens before each position (cumsum(mask) − 1), 1 on padding; so a left-padded row gets the
   * positions it would have unpadded.
   */
  positionIds?: Tensor;
}

export interface ForwardOptions {
  /** Run the LoRA adapters (default true); false gives the base model (the reference model). */
  adaptersEnabled?: boolean;
  /** Keep what backward() needs and return it as `tape` (default false). */
  saveForBackward?: boolean;
  /** Apply LoRA dropout (a training-mode forward). Default: saveForBackward. */
  dropout?: boolean;
}

export interface DecoderOutput {
  /** The final normed hidden states [B·T, D] (row b·T + t), in the compute dtype. */
  hidden: Tensor;
  /** The lm_head weight [vocab, D] (embed_tokens when tied); its gradient() when it trains. */
  lmHead: Parameter;
  /** With saveForBackward: pass it to backward(), or dispose() it. */
  tape?: DecoderTape;
}

interface Linear {
  spec: LinearSpec;
  weight: Parameter;
  bias?: Parameter;
  adapter?: { a: Parameter; b: Parameter };
}

interface Layer {
  index: number;
  inputNorm: Parameter;
  postAttentionNorm: Parameter;
  qNorm?: Parameter;
  kNorm?: Parameter;
  linears: Record<LoraTargetModule, Linear>;
}

/** One forward pass's inputs and switches, shared by its layers (and their recomputation). */
interface Pass {
  batch: number;
  seq: number;
  ids: Tensor;
  keyMask?: Tensor;
  positions: Tensor;
  adapters: boolean;
  dropout: boolean;
  /** Numbers the dropout masks of this pass. */
  index: number;
}

/** What one layer's backward reads (see the file comment). Shapes with N = B·T. */
interface LayerActivations {
  /** Layer input [N, D]. */
  x: Tensor;
  /** Residual after attention [N, D]. */
  h: Tensor;
  /** After q/k norm and RoPE: [B, T, Hq, Dh], [B, T, Hkv, Dh]; v [B, T, Hkv, Dh]. */
  q: Tensor;
  k: Tensor;
  v: Tensor;
  /** qwen3: the projections before q_norm / k_norm. */
  qPre?: Tensor;
  kPre?: Tensor;
  /** Attention output [B, T, Hq, Dh] and its logsumexp [B, Hq, T]. */
  attn: Tensor;
  lse: Tensor;
  /** MLP projections [N, F]. */
  gate: Tensor;
  up: Tensor;
  /** Each adapted linear's x·Aᵀ [N, r]. */
  xa: Partial<Record<LoraTargetModule, Tensor>>;
}

function isActivations(kept: LayerActivations | Tensor): kept is LayerActivations {
  return "attn" in kept;
}

function activationTensors(a: LayerActivations): Tensor[] {
  const list = [a.x, a.h, a.q, a.k, a.v, a.attn, a.lse, a.gate, a.up, ...Object.values(a.xa)];
  if (a.qPre) list.push(a.qPre);
  if (a.kPre) list.push(a.kPre);
  return list;
}

/** Frees what a tape keeps for one layer. */
function disposeKept(kept: LayerActivations | Tensor): void {
  for (const t of isActivations(kept) ? activationTensors(kept) : [kept]) t.dispose();
}

/** What a tape holds; reachable only from this module (through `tapes`). */
interface TapeState {
  owner: Decoder;
  pass: Pass;
  /** Per layer: its activations, or (gradient checkpointing) its input only. */
  layers: Array<LayerActivations | Tensor>;
  /** The final norm's input [N, D] and rstd [N]. */
  finalX: Tensor;
  finalRstd: Tensor;
}

const tapes = new WeakMap<DecoderTape, TapeState>();

/** The activations of one forward pass, kept for its backward: opaque outside the decoder. */
export class DecoderTape {
  /** True once backward() consumed the tape or it was disposed. */
  get disposed(): boolean {
    return !tapes.has(this);
  }

  /** Frees the kept activations (backward() does this itself). */
  dispose(): void {
    const state = tapes.get(this);
    if (!state) return;
    tapes.delete(this);
    state.layers.forEach(disposeKept);
    for (const t of [state.finalX, state.finalRstd, state.pass.ids, state.pass.positions]) t.dispose();
    state.pass.keyMask?.dispose();
  }
}

export class Decoder {
  readonly config: ModelConfig;
  readonly dtype: ComputeDType;
  readonly gradientCheckpointing: boolean;
  /** The resolved LoRA settings; undefined for full fine-tuning. */
  readonly lora: ResolvedLora | undefined;
  readonly embedTokens: Parameter;
  readonly finalNorm: Parameter;
  readonly lmHead: Parameter;
  private readonly layers: Layer[];
  private readonly params: Parameter[];
  private readonly invFreq: Tensor;
  private passCount = 0;
  private released = false;

  /**
   * Builds the decoder from `config` and its weights by Hugging Face name. The decoder owns the
   * tensors getWeight returns (converted to `dtype` if needed) and frees them in dispose(). A missing
   * or misshapen weight is an RlhfError naming it.
   */
  constructor(config: ModelConfig, getWeight: (hfName: string) => Tensor | undefined, options: DecoderOptions = {}) {
    this.config = config;
    this.dtype = options.dtype ?? "float32";
    this.gradientCheckpointing = options.gradientCheckpointing ?? false;
    this.lora = options.lora ? resolveLora(options.lora) : undefined;
    if (this.dtype !== "float32") {
      if (!this.lora) {
        throw new RlhfError(
          `full fine-tuning trains float32 weights; dtype "${this.dtype}" is for LoRA (set an adapter or use float32)`,
        );
      }
      if (native().backend !== "cuda") {
        throw new RlhfError(`dtype "${this.dtype}" needs the CUDA backend; the ${native().backend} backend computes in float32`);
      }
    }
    const trainBase = !this.lora;
    const byName = new Map<string, Parameter>();
    this.params = [];
    try {
      for (const spec of weightSpecs(config)) {
        const p = new Parameter(spec.name, loadWeight(getWeight, spec, this.dtype, config), trainBase);
        byName.set(spec.name, p);
        this.params.push(p);
      }
      const param = (name: string): Parameter => byName.get(name) as Parameter;
      this.layers = [];
      for (let i = 0; i < config.numLayers; ++i) {
        const linears = {} as Record<LoraTargetModule, Linear>;
        for (const spec of linearSpecs(config)) {
          const base = weightNames.linear(i, spec);
          const lin: Linear = { spec, weight: param(`${base}.weight`) };
          if (spec.bias) lin.bias = param(`${base}.bias`);
          if (this.lora?.targets.includes(spec.module)) lin.adapter = this.createAdapter(i, spec, base);
          linears[spec.module] = lin;
        }
        this.layers.push({
          index: i,
          inputNorm: param(weightNames.inputNorm(i)),
          postAttentionNorm: param(weightNames.postAttentionNorm(i)),
          qNorm: config.qkNorm ? param(weightNames.qNorm(i)) : undefined,
          kNorm: config.qkNorm ? param(weightNames.kNorm(i)) : undefined,
          linears,
        });
      }
      this.embedTokens = param(weightNames.embedTokens);
      this.finalNorm = param(weightNames.finalNorm);
      this.lmHead = config.tieWordEmbeddings ? this.embedTokens : param(weightNames.lmHead);
      this.invFreq = keep(ropeFrequencies({ headDim: config.headDim, theta: config.rope.theta, scaling: config.rope.scaling }));
    } catch (err) {
      for (const p of this.params) p.dispose();
      throw err;
    }
  }

  private createAdapter(layer: number, spec: LinearSpec, moduleName: string): { a: Parameter; b: Parameter } {
    const { r, seed } = this.lora as ResolvedLora;
    const names = loraParameterNames(moduleName);
    const a = keep(tensor("float32", [r, spec.inFeatures], initialLoraA(r, spec.inFeatures, seed, layer, spec.module)));
    const adapter = {
      a: new Parameter(names.a, a, true),
      b: new Parameter(names.b, keep(tensor("float32", [spec.outFeatures, r])), true),
    };
    this.params.push(adapter.a, adapter.b);
    return adapter;
  }

  /** Every parameter: the HF weights (model order), then the adapters (layer by layer). */
  parameters(): Parameter[] {
    return [...this.params];
  }

  /** The parameters that get gradients: the adapters with LoRA, every weight otherwise. */
  trainableParameters(): Parameter[] {
    return this.params.filter((p) => p.trainable);
  }

  /** Zeroes every allocated gradient. */
  zeroGrad(): void {
    for (const p of this.params) p.zeroGrad();
  }

  /** Frees every weight, adapter, gradient and table. */
  dispose(): void {
    if (this.released) return;
    this.released = true;
    for (const p of this.params) p.dispose();
    this.invFreq.dispose();
  }

  forward(batch: DecoderBatch, options: ForwardOptions = {}): DecoderOutput {
    if (this.released) throw new Error("Decoder.forward: the decoder was disposed");
    const save = options.saveForBackward ?? false;
    return scope(() => {
      const pass = this.preparePass(batch, options.adaptersEnabled ?? true, options.dropout ?? save);
      const n = pass.batch * pass.seq;
      let x = embedding(this.embedTokens.value, pass.ids).reshape([n, this.config.hiddenSize]);
      const kept: Array<LayerActivations | Tensor> = [];
      try {
        for (const layer of this.layers) {
          const input = x;
          if (save && !this.gradientCheckpointing) {
            const { out, saved } = scope(() => this.layerForward(layer, input, pass, true));
            const activations = saved as LayerActivations;
            activationTensors(activations).forEach(keep);
            kept.push(activations);
            x = out;
          } else {
            x = scope(() => this.layerForward(layer, input, pass, false).out);
            if (save) kept.push(keep(input));
            else input.dispose();
          }
        }
      } catch (err) {
        kept.forEach(disposeKept);
        throw err;
      }
      const { y: hidden, rstd } = rmsNorm(x, this.finalNorm.value, { eps: this.config.rmsNormEps });
      let tape: DecoderTape | undefined;
      if (save) {
        for (const t of [pass.ids, pass.positions, x, rstd]) keep(t);
        if (pass.keyMask) keep(pass.keyMask);
        tape = new DecoderTape();
        tapes.set(tape, { owner: this, pass, layers: kept, finalX: x, finalRstd: rstd });
      }
      return { hidden, lmHead: this.lmHead, tape };
    });
  }

  /**
   * Backpropagates dHidden ([B·T, D], the gradient of forward()'s `hidden`, compute dtype) through
   * the tape's pass, accumulating into the trainable parameters' gradients, and frees the tape.
   * The lm_head's own gradient is the caller's (logprobGatherBackward's dWeight).
   */
  backward(tape: DecoderTape, dHidden: Tensor): void {
    const state = tapes.get(tape);
    if (!state) throw new Error("Decoder.backward: the tape was already used or disposed");
    if (state.owner !== this) throw new Error("Decoder.backward: the tape comes from another decoder");
    const { pass } = state;
    const n = pass.batch * pass.seq;
    const d = this.config.hiddenSize;
    if (dHidden.dtype !== this.dtype || dHidden.shape.length !== 2 || dHidden.shape[0] !== n || dHidden.shape[1] !== d) {
      throw new TypeError(
        `Decoder.backward: dHidden must be ${this.dtype} [${n}, ${d}], got ${dHidden.dtype} [${dHidden.shape.join(", ")}]`,
      );
    }
    try {
      const dH = keep(
        rmsNormBackward(dHidden, state.finalX, this.finalNorm.value, state.finalRstd, this.normGrad(this.finalNorm)).dX,
      );
      try {
        for (let i = this.layers.length - 1; i >= 0; --i) {
          const layer = this.layers[i];
          const kept = state.layers[i];
          scope(() => {
            const activations = isActivations(kept)
              ? kept
              : (this.layerForward(layer, kept, pass, true).saved as LayerActivations);
            this.layerBackward(layer, activations, dH, pass);
          });
          // This layer's activations are done with: free them now, not when the tape goes.
          disposeKept(kept);
        }
        if (this.embedTokens.trainable) {
          embeddingBackward(dH.reshape([pass.batch, pass.seq, d]), pass.ids, this.embedTokens.gradient());
        }
      } finally {
        dH.dispose();
      }
    } finally {
      tape.dispose();
    }
  }

  /** Checks the batch and builds the pass's int32 tensors (handles of its own: the caller may dispose theirs). */
  private preparePass(batch: DecoderBatch, adapters: boolean, dropout: boolean): Pass {
    const { inputIds, attentionMask, positionIds } = batch;
    if (inputIds.dtype !== "int32" || inputIds.shape.length !== 2 || inputIds.shape[0] < 1 || inputIds.shape[1] < 1) {
      throw new TypeError(`Decoder.forward: inputIds must be int32 [B, T] with B, T ≥ 1, got ${describe(inputIds)}`);
    }
    const [b, t] = inputIds.shape;
    for (const [key, v] of [["attentionMask", attentionMask], ["positionIds", positionIds]] as const) {
      if (v && (v.dtype !== "int32" || v.shape.length !== 2 || v.shape[0] !== b || v.shape[1] !== t)) {
        throw new TypeError(`Decoder.forward: ${key} must be int32 [${b}, ${t}] like inputIds, got ${describe(v)}`);
      }
    }
    const window = this.config.slidingWindow;
    if (window !== null && t > window) {
      throw new RlhfError(
        `sequences of ${t} tokens are longer than the model's sliding_window (${window}, ${this.config.source}); ` +
          `sliding-window attention is not implemented: keep sequences to at most ${window} tokens`,
      );
    }
    const positions = positionIds ?? tensor("int32", [b, t], defaultPositions(attentionMask ? ints(attentionMask) : undefined, b, t));
    const useAdapters = adapters && this.lora !== undefined;
    return {
      batch: b,
      seq: t,
      ids: inputIds.contiguous(),
      keyMask: attentionMask?.contiguous(),
      positions: positionIds ? positions.contiguous() : positions,
      adapters: useAdapters,
      dropout: useAdapters && dropout && (this.lora as ResolvedLora).dropout > 0,
      index: this.passCount++,
    };
  }

  /** One decoder layer's forward; with `save`, also what its backward reads. */
  private layerForward(layer: Layer, x: Tensor, pass: Pass, save: boolean): { out: Tensor; saved?: LayerActivations } {
    const { numHeads, numKvHeads, headDim, rmsNormEps: eps } = this.config;
    const { batch: b, seq: t } = pass;
    const xa: Partial<Record<LoraTargetModule, Tensor>> = {};
    const n1 = rmsNorm(x, layer.inputNorm.value, { eps }).y;
    let q = this.linear(layer, "q_proj", n1, pass, xa).reshape([b, t, numHeads, headDim]);
    let k = this.linear(layer, "k_proj", n1, pass, xa).reshape([b, t, numKvHeads, headDim]);
    const v = this.linear(layer, "v_proj", n1, pass, xa).reshape([b, t, numKvHeads, headDim]);
    let qPre: Tensor | undefined;
    let kPre: Tensor | undefined;
    if (layer.qNorm && layer.kNorm) {
      qPre = q;
      kPre = k;
      q = rmsNorm(qPre, layer.qNorm.value, { eps }).y;
      k = rmsNorm(kPre, layer.kNorm.value, { eps }).y;
    }
    rope({ x: q, positions: pass.positions, invFreq: this.invFreq, inPlace: true });
    rope({ x: k, positions: pass.positions, invFreq: this.invFreq, inPlace: true });
    const { out: attn, lse } = this.attend(q, k, v, pass);
    const h = this.linear(layer, "o_proj", attn.reshape([b * t, numHeads * headDim]), pass, xa);
    addInto(h, x);
    const n2 = rmsNorm(h, layer.postAttentionNorm.value, { eps }).y;
    const gate = this.linear(layer, "gate_proj", n2, pass, xa);
    const up = this.linear(layer, "up_proj", n2, pass, xa);
    const out = this.linear(layer, "down_proj", siluMul(gate, up), pass, xa);
    addInto(out, h);
    if (!save) return { out };
    return { out, saved: { x, h, q, k, v, qPre, kPre, attn, lse, gate, up, xa } };
  }

  /**
   * Causal grouped-query self-attention of one layer: q [B, T, Hq, Dh] against k, v [B, S, Hkv, Dh]
   * (S = T here). Generation with a KV cache slots in here: k and v with S > T earlier positions,
   * where attention() places query t at key position S − T + t.
   */
  private attend(q: Tensor, k: Tensor, v: Tensor, pass: Pass): AttentionResult {
    return attention({ q, k, v, keyMask: pass.keyMask });
  }

  /** y = x·Wᵀ (+ b) (+ LoRA); records the adapter's x·Aᵀ in `xa`. */
  private linear(
    layer: Layer, module: LoraTargetModule, x: Tensor, pass: Pass, xa: Partial<Record<LoraTargetModule, Tensor>>,
  ): Tensor {
    const lin = layer.linears[module];
    const result = lora({ x, weight: lin.weight.value, bias: lin.bias?.value, ...this.adapterArgs(lin, layer, module, pass) });
    if (result.xa) xa[module] = result.xa;
    return result.y;
  }

  /** The lora op's adapter, scale, dropout and seed arguments for one linear layer in one pass. */
  private adapterArgs(lin: Linear, layer: Layer, module: LoraTargetModule, pass: Pass) {
    const adapter = pass.adapters ? lin.adapter : undefined;
    if (!adapter || !this.lora) return { scale: 1 };
    const args = { a: adapter.a.value, b: adapter.b.value, scale: this.lora.scale };
    if (!pass.dropout) return args;
    return { ...args, dropout: this.lora.dropout, seed: dropoutSeed(this.lora.seed, pass.index, layer.index, module) };
  }

  /**
   * Backward of a linear layer: accumulates the trainable gradients (adapter, or weight and bias)
   * and returns dX, or adds it into `dX` when given; `dX: false` skips it (nothing below needs it).
   */
  private linearBackward(
    layer: Layer, module: LoraTargetModule, x: Tensor, dY: Tensor, pass: Pass, a: LayerActivations, dX?: Tensor | false,
  ): Tensor {
    const lin = layer.linears[module];
    const adapter = pass.adapters ? lin.adapter : undefined;
    const grads = loraBackward({
      dY,
      x,
      weight: lin.weight.value,
      ...this.adapterArgs(lin, layer, module, pass),
      ...(adapter ? { xa: a.xa[module], dA: adapter.a.gradient(), dB: adapter.b.gradient() } : {}),
      ...(dX ? { dX, accumulateDx: true } : dX === false ? { wantDx: false } : {}),
      ...(lin.weight.trainable ? { dWeight: lin.weight.gradient() } : {}),
      ...(lin.bias?.trainable ? { dBias: lin.bias.gradient() } : {}),
    });
    return grads.dX as Tensor;
  }

  /** rmsNormBackward's weight-gradient options for a norm weight. */
  private normGrad(p: Parameter) {
    return p.trainable ? { dWeight: p.gradient() } : { wantWeight: false };
  }

  /**
   * One layer's backward. dH [N, D] holds the gradient of the layer's output and is turned in place
   * into the gradient of its input (the residual branches add into it); left incomplete for the
   * first layer when nothing below it trains.
   */
  private layerBackward(layer: Layer, a: LayerActivations, dH: Tensor, pass: Pass): void {
    const { numHeads, numKvHeads, headDim, rmsNormEps: eps } = this.config;
    const n = pass.batch * pass.seq;

    // MLP: out = h + down(silu(gate(n2)) · up(n2)), n2 = RMSNorm(h).
    const post = layer.postAttentionNorm;
    const n2 = rmsNorm(a.h, post.value, { eps });
    const dAct = this.linearBackward(layer, "down_proj", siluMul(a.gate, a.up), dH, pass, a);
    const { dGate, dUp } = siluMulBackward(a.gate, a.up, dAct);
    const dN2 = this.linearBackward(layer, "gate_proj", n2.y, dGate, pass, a);
    this.linearBackward(layer, "up_proj", n2.y, dUp, pass, a, dN2);
    rmsNormBackward(dN2, a.h, post.value, n2.rstd, { dX: dH, accumulate: true, ...this.normGrad(post) });

    // Attention: h = x + o(attention(rope(q(n1)), rope(k(n1)), v(n1))), n1 = RMSNorm(x).
    const dAttn = this.linearBackward(layer, "o_proj", a.attn.reshape([n, numHeads * headDim]), dH, pass, a);
    const { dQ, dK, dV } = attentionBackward({
      q: a.q,
      k: a.k,
      v: a.v,
      keyMask: pass.keyMask,
      out: a.attn,
      lse: a.lse,
      dOut: dAttn.reshape(a.attn.shape),
    });
    ropeBackward({ dOut: dQ, positions: pass.positions, invFreq: this.invFreq, inPlace: true });
    ropeBackward({ dOut: dK, positions: pass.positions, invFreq: this.invFreq, inPlace: true });
    let dQPre = dQ;
    let dKPre = dK;
    if (layer.qNorm && layer.kNorm && a.qPre && a.kPre) {
      dQPre = this.headNormBackward(layer.qNorm, a.qPre, dQ);
      dKPre = this.headNormBackward(layer.kNorm, a.kPre, dK);
    }
    const inputNorm = layer.inputNorm;
    const n1 = rmsNorm(a.x, inputNorm.value, { eps });
    const dQkv: Array<[LoraTargetModule, Tensor]> = [
      ["q_proj", dQPre.reshape([n, numHeads * headDim])],
      ["k_proj", dKPre.reshape([n, numKvHeads * headDim])],
      ["v_proj", dV.reshape([n, numKvHeads * headDim])],
    ];
    // Under LoRA nothing below the first layer trains: its input gradient is not needed.
    if (layer.index === 0 && !this.embedTokens.trainable && !inputNorm.trainable) {
      for (const [module, dY] of dQkv) this.linearBackward(layer, module, n1.y, dY, pass, a, false);
      return;
    }
    const dN1 = this.linearBackward(layer, dQkv[0][0], n1.y, dQkv[0][1], pass, a);
    for (const [module, dY] of dQkv.slice(1)) this.linearBackward(layer, module, n1.y, dY, pass, a, dN1);
    rmsNormBackward(dN1, a.x, inputNorm.value, n1.rstd, { dX: dH, accumulate: true, ...this.normGrad(inputNorm) });
  }

  /** Backward of qwen3's per-head q/k RMSNorm (its rstd recomputed from the saved input). */
  private headNormBackward(norm: Parameter, pre: Tensor, dY: Tensor): Tensor {
    const { rstd } = rmsNorm(pre, norm.value, { eps: this.config.rmsNormEps });
    return rmsNormBackward(dY, pre, norm.value, rstd, this.normGrad(norm)).dX;
  }
}

/**
 * transformers' generation positions: cumsum(mask) − 1 on tokens, 1 on padding (masked_fill);
 * without a mask, 0..T−1 in every row.
 */
export function defaultPositions(mask: Int32Array | undefined, batch: number, seq: number): Int32Array {
  const out = new Int32Array(batch * seq);
  for (let b = 0; b < batch; ++b) {
    let count = 0;
    for (let t = 0; t < seq; ++t) {
      const i = b * seq + t;
      if (!mask || mask[i] !== 0) out[i] = count++;
      else out[i] = 1;
    }
  }
  return out;
}

function describe(t: Tensor): string {
  return `${t.dtype} [${t.shape.join(", ")}]`;
}
