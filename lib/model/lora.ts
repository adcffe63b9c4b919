/**
 * LoRA adapters on the decoder's linear layers, as PEFT builds them.
 *
 * For a linear layer W [out, in], lora_A [r, in] and lora_B [out, r] add scale · B·A·x with
 * scale = alpha / r, or alpha / √r with rsLoRA (PEFT's `use_rslora`). PEFT's default
 * initialisation (`init_lora_weights=True`, `reset_lora_parameters`): A by
 * `kaiming_uniform_(a=√5)`, i.e. uniform in ±1/√in (gain √(2/(1+a²)) = √(1/3), bound
 * gain·√(3/fan_in)); B zeros, so the adapted model starts equal to the base model. The uniform
 * numbers come from a seeded generator per (seed, layer, module), so an adapter's initial values do
 * not depend on which other modules are targeted.
 *
 * Naming: an adapter of the HF module `model.layers.{i}.self_attn.q_proj` has the parameters
 * `model.layers.{i}.self_attn.q_proj.lora_A.weight` and `...q_proj.lora_B.weight`. PEFT's
 * adapter_model.safetensors names the same tensors with the prefix `base_model.model.`
 * (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`); in memory PEFT also inserts
 * the adapter name (`lora_A.default.weight`), which the saved file drops.
 */
import { RlhfError } from "../errors";
import { loraScale } from "../native";

/** The linear layers of a decoder layer that LoRA can target (PEFT's target_modules names). */
export const LORA_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;
export type LoraTargetModule = (typeof LORA_TARGET_MODULES)[number];

export interface LoraSettings {
  /** Rank (axolotl `lora_r`), an integer ≥ 1. */
  r: number;
  /** `lora_alpha`, finite. */
  alpha: number;
  /** `lora_dropout` in [0, 1): applied to each adapter's input in training forwards. Default 0. */
  dropout?: number;
  /** `lora_target_modules`. */
  targetModules?: readonly string[];
  /** `lora_target_linear`: every linear layer of the decoder layers (not the lm_head). */
  targetLinear?: boolean;
  /** `peft_use_rslora`: scale alpha/√r instead of alpha/r. */
  useRslora?: boolean;
  /** Seeds A's initialisation and the dropout masks. Default 42 (transformers' default seed). */
  seed?: number;
}

/** LoraSettings checked, with the target list resolved (in LORA_TARGET_MODULES order). */
export interface ResolvedLora {
  readonly r: number;
  readonly alpha: number;
  readonly dropout: number;
  readonly targets: readonly LoraTargetModule[];
  readonly useRslora: boolean;
  readonly seed: number;
  /** The adapter output's multiplier: alpha/r or alpha/√r. */
  readonly scale: number;
}

const DEFAULT_SEED = 42;

/** Checks LoRA settings; a bad value is an RlhfError naming the axolotl key. */
export function resolveLora(settings: LoraSettings): ResolvedLora {
  const { r, alpha } = settings;
  if (!Number.isSafeInteger(r) || r < 1) throw new RlhfError(`lora_r must be an integer ≥ 1, got ${r}`);
  if (typeof alpha !== "number" || !Number.isFinite(alpha)) {
    throw new RlhfError(`lora_alpha must be a finite number, got ${alpha}`);
  }
  const dropout = settings.dropout ?? 0;
  if (typeof dropout !== "number" || !(dropout >= 0 && dropout < 1)) {
    throw new RlhfError(`lora_dropout must be a number in [0, 1), got ${dropout}`);
  }
  const seed = settings.seed ?? DEFAULT_SEED;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RlhfError(`seed must be an integer ≥ 0, got ${seed}`);
  const wanted = new Set<string>(settings.targetLinear ? LORA_TARGET_MODULES : []);
  for (const m of settings.targetModules ?? []) {
    if (!(LORA_TARGET_MODULES as readonly string[]).includes(m)) {
      throw new RlhfError(
        `lora_target_modules: "${m}" is not a linear layer of this decoder; choose from ${LORA_TARGET_MODULES.join(", ")} ` +
          "(or set lora_target_linear: true for all of them)",
      );
    }
    wanted.add(m);
  }
  if (wanted.size === 0) {
    throw new RlhfError("LoRA needs target modules: set lora_target_modules (e.g. [q_proj, v_proj]) or lora_target_linear: true");
  }
  const useRslora = settings.useRslora ?? false;
  return {
    r,
    alpha,
    dropout,
    targets: LORA_TARGET_MODULES.filter((m) => wanted.has(m)),
    useRslora,
    seed,
    scale: loraScale(alpha, r, useRslora),
  };
}

/** The names of the adapter parameters of the linear layer `moduleName` (an HF module path). */
export function loraParameterNames(moduleName: string): { a: string; b: string } {
  return { a: `${moduleName}.lora_A.weight`, b: `${moduleName}.lora_B.weight` };
}

/** PEFT's adapter_model.safetensors name of one of our adapter parameter names. */
export function peftTensorName(parameterName: string): string {
  return `base_model.model.${parameterName}`;
}

/**
 * lora_A's initial values, [r, inFeatures] row-major: uniform in [−1/√in, 1/√in) (PEFT's
 * kaiming_uniform_ with a = √5), from a generator seeded by (seed, layer, module).
 */
export function initialLoraA(r: number, inFeatures: number, seed: number, layer: number, module: LoraTargetModule): Float32Array {
  const bound = 1 / Math.sqrt(inFeatures);
  const next = xoshiro128ss(seed, layer, LORA_TARGET_MODULES.indexOf(module));
  const out = new Float32Array(r * inFeatures);
  for (let i = 0; i < out.length; ++i) {
    // 24 random bits → a float32-exact uniform in [0, 1).
    const u = (next() >>> 8) / 16777216;
    out[i] = (2 * u - 1) * bound;
  }
  return out;
}

/**
 * The dropout-mask seed (an integer in [0, 2^53), as the lora op takes) of one adapter in one
 * forward pass: distinct per (seed, pass, layer, module) so no two masks repeat, and a pure function
 * of them so that gradient checkpointing's recomputation and the backward regenerate the same mask.
 */
export function dropoutSeed(seed: number, pass: number, layer: number, module: LoraTargetModule): number {
  const key = mix32(mix32(seedState(seed), pass), (layer << 4) | LORA_TARGET_MODULES.indexOf(module));
  const hi = mix32(key, 1) & 0x1fffff;
  const lo = mix32(key, 2);
  return hi * 4294967296 + lo;
}

/** A 32-bit state from a seed in [0, 2^53), its high bits included. */
function seedState(seed: number): number {
  return mix32(seed >>> 0, Math.floor(seed / 4294967296) >>> 0);
}

/** Mixes a 32-bit value into a 32-bit state (murmur3's finaliser over state + value). */
function mix32(state: number, value: number): number {
  let h = (state ^ Math.imul(value, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** xoshiro128** seeded through mix32 from (seed, layer, module); returns 32-bit unsigned draws. */
function xoshiro128ss(seed: number, layer: number, module: number): () => number {
  let s0 = mix32(seedState(seed), layer);
  let s1 = mix32(s0, module + 1);
  let s2 = mix32(s1, 0x243f6a88);
  let s3 = mix32(s2, 0x85a308d3);
  if ((s0 | s1 | s2 | s3) === 0) s0 = 1;  // the all-zero state is a fixed point
  return () => {
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = rotl(s3, 11);
    return result;
  };
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
