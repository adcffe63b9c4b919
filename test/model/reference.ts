/**
 * An independent float64 Llama-family decoder, written from transformers' modeling files
 * (LlamaModel, MistralModel, Qwen2Model, Qwen3Model) the way they compute: per token, per head,
 * plain loops. It reads the raw config.json object and weights by their Hugging Face names, so it
 * shares nothing with lib/model. Used for the decoder's forward values and, through central
 * differences, its gradients.
 */
import { Rng } from "../helpers/random";

export type HfConfig = Record<string, unknown>;
/** Weights by HF name (and LoRA adapters by `<module>.lora_A.weight` / `.lora_B.weight`). */
export type Weights = Map<string, Float64Array>;

export interface RefDims {
  vocab: number;
  d: number;
  f: number;
  layers: number;
  hq: number;
  hkv: number;
  dh: number;
  eps: number;
  tied: boolean;
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  qkNorm: boolean;
}

/** The dimensions a config.json describes, read as transformers reads them (test configs give every key). */
export function refDims(c: HfConfig): RefDims {
  const type = c.model_type as string;
  const d = c.hidden_size as number;
  const hq = c.num_attention_heads as number;
  return {
    vocab: c.vocab_size as number,
    d,
    f: c.intermediate_size as number,
    layers: c.num_hidden_layers as number,
    hq,
    hkv: (c.num_key_value_heads as number | undefined) ?? hq,
    dh: (c.head_dim as number | undefined) ?? d / hq,
    eps: c.rms_norm_eps as number,
    tied: (c.tie_word_embeddings as boolean | undefined) ?? false,
    qkvBias: type === "qwen2" || c.attention_bias === true,
    oBias: c.attention_bias === true,
    mlpBias: c.mlp_bias === true,
    qkNorm: type === "qwen3",
  };
}

const LINEARS = [
  ["self_attn", "q_proj"], ["self_attn", "k_proj"], ["self_attn", "v_proj"], ["self_attn", "o_proj"],
  ["mlp", "gate_proj"], ["mlp", "up_proj"], ["mlp", "down_proj"],
] as const;

/** [out, in] of each linear layer. */
function linearShape(m: RefDims, module: string): [number, number] {
  switch (module) {
    case "q_proj": return [m.hq * m.dh, m.d];
    case "k_proj": case "v_proj": return [m.hkv * m.dh, m.d];
    case "o_proj": return [m.d, m.hq * m.dh];
    case "down_proj": return [m.d, m.f];
    default: return [m.f, m.d];
  }
}

/** Random weights of a config (HF names written out here), float32-representable values. */
export function randomWeights(c: HfConfig, rng: Rng): Weights {
  const m = refDims(c);
  const w: Weights = new Map();
  const norm = (n: number) => Float64Array.from(rng.normals(n, 0.2), (v) => Math.fround(1 + v));
  w.set("model.embed_tokens.weight", rng.normals(m.vocab * m.d));
  for (let i = 0; i < m.layers; ++i) {
    const p = `model.layers.${i}`;
    w.set(`${p}.input_layernorm.weight`, norm(m.d));
    w.set(`${p}.post_attention_layernorm.weight`, norm(m.d));
    for (const [group, module] of LINEARS) {
      const [o, k] = linearShape(m, module);
      w.set(`${p}.${group}.${module}.weight`, rng.normals(o * k, 1 / Math.sqrt(k)));
      const hasBias = module === "o_proj" ? m.oBias : group === "mlp" ? m.mlpBias : m.qkvBias;
      if (hasBias) w.set(`${p}.${group}.${module}.bias`, rng.normals(o, 0.3));
    }
    if (m.qkNorm) {
      w.set(`${p}.self_attn.q_norm.weight`, norm(m.dh));
      w.set(`${p}.self_attn.k_norm.weight`, norm(m.dh));
    }
  }
  w.set("model.norm.weight", norm(m.d));
  if (!m.tied) w.set("lm_head.weight", rng.normals(m.vocab * m.d, 0.5));
  return w;
}

/** Random LoRA adapters (both A and B nonzero) for the given modules of every layer. */
export function randomAdapters(c: HfConfig, r: number, modules: readonly string[], rng: Rng): Weights {
  const m = refDims(c);
  const w: Weights = new Map();
  for (let i = 0; i < m.layers; ++i) {
    for (const [group, module] of LINEARS) {
      if (!modules.includes(module)) continue;
      const [o, k] = linearShape(m, module);
      const base = `model.layers.${i}.${group}.${module}`;
      w.set(`${base}.lora_A.weight`, rng.normals(r * k, 1 / Math.sqrt(k)));
      w.set(`${base}.lora_B.weight`, rng.normals(o * r, 0.3));
    }
  }
  return w;
}

/** transformers' _compute_default_rope_parameters and _compute_llama3_parameters, in float64. */
export function refInvFreq(c: HfConfig, dh: number): Float64Array {
  const theta = (c.rope_theta as number | undefined) ?? 10000;
  const inv = Float64Array.from({ length: dh / 2 }, (_, j) => 1 / Math.pow(theta, (2 * j) / dh));
  const s = c.rope_scaling as Record<string, number> | undefined;
  if (!s) return inv;
  const { factor, low_freq_factor: low, high_freq_factor: high, original_max_position_embeddings: old } = s;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < old / high) return f;
    if (wavelen > old / low) return f / factor;
    const smooth = (old / wavelen - low) / (high - low);
    return (1 - smooth) * (f / factor) + smooth * f;
  });
}

export interface RefBatch {
  ids: Int32Array;
  /** 1 = token, 0 = padding. */
  mask: Int32Array;
  positions: Int32Array;
  batch: number;
  seq: number;
}

export interface RefLora {
  adapters: Weights;
  scale: number;
}

function rmsNormRow(x: Float64Array, off: number, n: number, w: Float64Array, eps: number, out: Float64Array, outOff: number): void {
  let ss = 0;
  for (let i = 0; i < n; ++i) ss += x[off + i] * x[off + i];
  const r = 1 / Math.sqrt(ss / n + eps);
  for (let i = 0; i < n; ++i) out[outOff + i] = x[off + i] * r * w[i];
}

/** x [rows, k] · Wᵀ + b + scale · (x·Aᵀ)·Bᵀ → [rows, o]. */
function linear(x: Float64Array, rows: number, k: number, o: number, w: Weights, name: string, lora?: RefLora): Float64Array {
  const W = w.get(`${name}.weight`) as Float64Array;
  const b = w.get(`${name}.bias`);
  const A = lora?.adapters.get(`${name}.lora_A.weight`);
  const B = lora?.adapters.get(`${name}.lora_B.weight`);
  const r = A ? A.length / k : 0;
  const y = new Float64Array(rows * o);
  const xa = new Float64Array(r);
  for (let i = 0; i < rows; ++i) {
    for (let j = 0; j < r; ++j) {
      let s = 0;
      for (let p = 0; p < k; ++p) s += x[i * k + p] * (A as Float64Array)[j * k + p];
      xa[j] = s;
    }
    for (let c = 0; c < o; ++c) {
      let s = b ? b[c] : 0;
      for (let p = 0; p < k; ++p) s += x[i * k + p] * W[c * k + p];
      let ad = 0;
      for (let j = 0; j < r; ++j) ad += xa[j] * (B as Float64Array)[c * r + j];
      y[i * o + c] = s + (lora ? lora.scale * ad : 0);
    }
  }
  return y;
}

/** HF rotate_half RoPE on x [rows, heads, dh] in place. */
function applyRope(x: Float64Array, rows: number, heads: number, dh: number, inv: Float64Array, positions: Int32Array): void {
  const half = dh / 2;
  for (let i = 0; i < rows; ++i) {
    for (let h = 0; h < heads; ++h) {
      const off = (i * heads + h) * dh;
      for (let j = 0; j < half; ++j) {
        const a = positions[i] * inv[j];
        const c = Math.cos(a);
        const s = Math.sin(a);
        const x1 = x[off + j];
        const x2 = x[off + j + half];
        x[off + j] = x1 * c - x2 * s;
        x[off + j + half] = x2 * c + x1 * s;
      }
    }
  }
}

/**
 * The final normed hidden states [B·T, D] of the model. `lora` adds adapters to the linear layers
 * named in it.
 */
export function refHidden(c: HfConfig, w: Weights, batch: RefBatch, lora?: RefLora): Float64Array {
  const m = refDims(c);
  const { batch: B, seq: T } = batch;
  const N = B * T;
  const inv = refInvFreq(c, m.dh);
  const emb = w.get("model.embed_tokens.weight") as Float64Array;
  let x = new Float64Array(N * m.d);
  for (let i = 0; i < N; ++i) x.set(emb.subarray(batch.ids[i] * m.d, (batch.ids[i] + 1) * m.d), i * m.d);
  const group = m.hq / m.hkv;
  for (let l = 0; l < m.layers; ++l) {
    const p = `model.layers.${l}`;
    const n1 = new Float64Array(N * m.d);
    for (let i = 0; i < N; ++i) rmsNormRow(x, i * m.d, m.d, w.get(`${p}.input_layernorm.weight`) as Float64Array, m.eps, n1, i * m.d);
    const q = linear(n1, N, m.d, m.hq * m.dh, w, `${p}.self_attn.q_proj`, lora);
    const k = linear(n1, N, m.d, m.hkv * m.dh, w, `${p}.self_attn.k_proj`, lora);
    const v = linear(n1, N, m.d, m.hkv * m.dh, w, `${p}.self_attn.v_proj`, lora);
    if (m.qkNorm) {
      for (let r = 0; r < N * m.hq; ++r) rmsNormRow(q, r * m.dh, m.dh, w.get(`${p}.self_attn.q_norm.weight`) as Float64Array, m.eps, q, r * m.dh);
      for (let r = 0; r < N * m.hkv; ++r) rmsNormRow(k, r * m.dh, m.dh, w.get(`${p}.self_attn.k_norm.weight`) as Float64Array, m.eps, k, r * m.dh);
    }
    applyRope(q, N, m.hq, m.dh, inv, batch.positions);
    applyRope(k, N, m.hkv, m.dh, inv, batch.positions);
    // Eager attention: softmax over keys j ≤ t of the same row with mask 1; a row with none is 0.
    const att = new Float64Array(N * m.hq * m.dh);
    const scale = 1 / Math.sqrt(m.dh);
    for (let b = 0; b < B; ++b) {
      for (let t = 0; t < T; ++t) {
        for (let h = 0; h < m.hq; ++h) {
          const kvh = Math.floor(h / group);
          const qo = ((b * T + t) * m.hq + h) * m.dh;
          const scores: number[] = [];
          const keys: number[] = [];
          for (let j = 0; j <= t; ++j) {
            if (batch.mask[b * T + j] === 0) continue;
            const ko = ((b * T + j) * m.hkv + kvh) * m.dh;
            let s = 0;
            for (let e = 0; e < m.dh; ++e) s += q[qo + e] * k[ko + e];
            scores.push(s * scale);
            keys.push(ko);
          }
          if (keys.length === 0) continue;
          const mx = Math.max(...scores);
          const ex = scores.map((s) => Math.exp(s - mx));
          const z = ex.reduce((a, e) => a + e, 0);
          for (let j = 0; j < keys.length; ++j) {
            for (let e = 0; e < m.dh; ++e) att[qo + e] += (ex[j] / z) * v[keys[j] + e];
          }
        }
      }
    }
    const o = linear(att, N, m.hq * m.dh, m.d, w, `${p}.self_attn.o_proj`, lora);
    const h = x.map((xi, i) => xi + o[i]);
    const n2 = new Float64Array(N * m.d);
    for (let i = 0; i < N; ++i) rmsNormRow(h, i * m.d, m.d, w.get(`${p}.post_attention_layernorm.weight`) as Float64Array, m.eps, n2, i * m.d);
    const gate = linear(n2, N, m.d, m.f, w, `${p}.mlp.gate_proj`, lora);
    const up = linear(n2, N, m.d, m.f, w, `${p}.mlp.up_proj`, lora);
    const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]);
    const down = linear(act, N, m.f, m.d, w, `${p}.mlp.down_proj`, lora);
    x = h.map((hi, i) => hi + down[i]);
  }
  const out = new Float64Array(N * m.d);
  for (let i = 0; i < N; ++i) rmsNormRow(x, i * m.d, m.d, w.get("model.norm.weight") as Float64Array, m.eps, out, i * m.d);
  return out;
}

/** The lm_head of the weights: lm_head.weight, or embed_tokens when tied. */
export function refLmHead(c: HfConfig, w: Weights): Float64Array {
  return (w.get(refDims(c).tied ? "model.embed_tokens.weight" : "lm_head.weight")) as Float64Array;
}

/** logits [N, V] = hidden [N, D] · lm_headᵀ. */
export function refLogits(hidden: ArrayLike<number>, lmHead: Float64Array, n: number, d: number): Float64Array {
  const v = lmHead.length / d;
  const out = new Float64Array(n * v);
  for (let i = 0; i < n; ++i) {
    for (let c = 0; c < v; ++c) {
      let s = 0;
      for (let e = 0; e < d; ++e) s += hidden[i * d + e] * lmHead[c * d + e];
      out[i * v + c] = s;
    }
  }
  return out;
}

/** Σ_i weights[i] · log softmax(logits[i])[targets[i]] over targets ≠ −100. */
export function refWeightedLogprob(logits: Float64Array, v: number, targets: Int32Array, weights: ArrayLike<number>): number {
  let total = 0;
  for (let i = 0; i < targets.length; ++i) {
    if (targets[i] === -100) continue;
    const row = logits.subarray(i * v, (i + 1) * v);
    const mx = Math.max(...row);
    let z = 0;
    for (const x of row) z += Math.exp(x - mx);
    total += weights[i] * (row[targets[i]] - mx - Math.log(z));
  }
  return total;
}

/** The shape of a weight or adapter by its name. */
export function refWeightShape(c: HfConfig, name: string): number[] {
  const m = refDims(c);
  if (name === "model.embed_tokens.weight" || name === "lm_head.weight") return [m.vocab, m.d];
  if (name.endsWith("layernorm.weight") || name === "model.norm.weight") return [m.d];
  if (name.endsWith("q_norm.weight") || name.endsWith("k_norm.weight")) return [m.dh];
  const module = /\.(\w+_proj)\./.exec(name)?.[1] as string;
  const [o, k] = linearShape(m, module);
  if (name.endsWith(".bias")) return [o];
  if (name.endsWith("lora_A.weight")) return [-1, k];
  if (name.endsWith("lora_B.weight")) return [o, -1];
  return [o, k];
}

/** transformers' generation positions: tokens before each position in its row; 1 on padding. */
export function refPositions(mask: Int32Array, batch: number, seq: number): Int32Array {
  const out = new Int32Array(batch * seq);
  for (let b = 0; b < batch; ++b) {
    for (let t = 0; t < seq; ++t) {
      let before = 0;
      for (let j = 0; j < t; ++j) before += mask[b * seq + j];
      out[b * seq + t] = mask[b * seq + t] ? before : 1;
    }
  }
  return out;
}
