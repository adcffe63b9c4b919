/**
 * The preference and RL losses, exact to TRL 1.x (see shared/reference/trl-losses.md §2–§6).
 *
 * Inputs are per-sequence sums S of completion-token log-probs (float32 [P] for pairs, [B] for
 * KTO rows) and completion lengths n (float32 token counts); GRPO takes per-token log-probs
 * [B, T] and a 0/1 mask. Each call computes in float64 and returns the loss, the gradient of the
 * loss with respect to every policy input (chain it to the tokens through the log-prob gather),
 * and TRL's metrics under TRL's names. Options carry TRL's config keys in camelCase.
 */
import { nativeFunction } from "../addon";
import { Tensor } from "../tensor";

/** Metrics of the paired losses (DPO, ORPO, CPO): means over the pairs of the batch. */
export interface PairMetrics {
  "rewards/chosen": number;
  "rewards/rejected": number;
  /** Fraction of pairs with chosen reward > rejected reward. */
  "rewards/accuracies": number;
  "rewards/margins": number;
  "logps/chosen": number;
  "logps/rejected": number;
}

export interface PairLossResult<M> {
  loss: number;
  /** d loss / d policyChosen, float32 [P]. */
  dPolicyChosen: Tensor;
  /** d loss / d policyRejected, float32 [P]. */
  dPolicyRejected: Tensor;
  metrics: M;
}

// ---------------------------------------------------------------------------------------------
// DPO

export type DpoLossType =
  | "sigmoid"
  | "hinge"
  | "ipo"
  | "robust"
  | "exo_pair"
  | "nca_pair"
  | "bco_pair"
  | "sppo_hard"
  | "apo_zero"
  | "apo_down"
  | "discopop"
  | "sigmoid_norm"
  | "sft";

export type FDivergenceType = "reverse_kl" | "forward_kl" | "js_divergence" | "alpha_divergence";

export interface DpoLossInputs {
  /** Policy log-prob sums of the chosen completions, float32 [P]. */
  policyChosen: Tensor;
  policyRejected: Tensor;
  /** Reference log-prob sums (constants), float32 [P]. */
  refChosen: Tensor;
  refRejected: Tensor;
  /** Completion token counts, float32 [P]: required by ipo, sigmoid_norm and sft (chosen only). */
  chosenLengths?: Tensor;
  rejectedLengths?: Tensor;
  /** WPO weights w_chosen·w_rejected per pair (use_weighting), float32 [P], ≥ 0. */
  pairWeights?: Tensor;
}

export interface DpoLossOptions {
  /** β (τ for ipo), > 0. Default 0.1. */
  beta?: number;
  /** One loss type or several, combined as Σ_k lossWeights[k] · mean_pairs(L_k). Default "sigmoid". */
  lossType?: DpoLossType | DpoLossType[];
  /** One weight ≥ 0 per loss type. Default all 1. */
  lossWeights?: number[];
  /** ε of robust (in [0, 0.5)) and exo_pair (> 0 required). Default 0. */
  labelSmoothing?: number;
  /** Default "reverse_kl" (standard DPO). */
  fDivergenceType?: FDivergenceType;
  /** α of alpha_divergence. Default 0.5. */
  fAlphaDivergenceCoef?: number;
  /** τ of discopop, > 0. Default 0.05. */
  discopopTau?: number;
}

type DpoLossNative = (args: DpoLossInputs & DpoLossOptions) => PairLossResult<PairMetrics>;

/** DPO and its variants (TRL's DPOTrainer loss), with the gradient w.r.t. the policy sums. */
export function dpoLoss(inputs: DpoLossInputs, options: DpoLossOptions = {}): PairLossResult<PairMetrics> {
  return nativeFunction<DpoLossNative>("dpoLoss")({ ...inputs, ...options });
}

// ---------------------------------------------------------------------------------------------
// KTO

export interface KtoLossInputs {
  /** Policy log-prob sums, float32 [B]. */
  policyLogps: Tensor;
  /** Reference log-prob sums, float32 [B]. */
  refLogps: Tensor;
  /** int32 [B]: 1 = desirable (chosen), 0 = undesirable (rejected). */
  desirable: Tensor;
}

export interface KtoLossOptions {
  /** Default 0.1; > 0. */
  beta?: number;
  /** Default "kto". */
  lossType?: "kto" | "apo_zero_unpaired";
  /** λ_D ≥ 0. Default 1. */
  desirableWeight?: number;
  /** λ_U ≥ 0. Default 1. */
  undesirableWeight?: number;
  /**
   * The KL anchor z0 (required for "kto"): the mean over processes of mean(S_KL − S_KL_ref) of the
   * mismatched completions; clamped at 0 as TRL does. Ignored by apo_zero_unpaired (z0 = 0).
   */
  kl?: number;
}

/**
 * KTO metrics. The sums and counts let a trainer average over micro-batches and processes as TRL
 * does; the means are present only when their group is (margins only when both are).
 */
export interface KtoMetrics {
  kl: number;
  "rewards/chosen_sum": number;
  "rewards/rejected_sum": number;
  "logps/chosen_sum": number;
  "logps/rejected_sum": number;
  "count/chosen": number;
  "count/rejected": number;
  "rewards/chosen"?: number;
  "rewards/rejected"?: number;
  "rewards/margins"?: number;
  "logps/chosen"?: number;
  "logps/rejected"?: number;
}

export interface KtoLossResult {
  loss: number;
  /** d loss / d policyLogps, float32 [B]. */
  dPolicy: Tensor;
  metrics: KtoMetrics;
}

type KtoLossNative = (args: KtoLossInputs & KtoLossOptions) => KtoLossResult;

/** KTO (unpaired desirable/undesirable rows), with the gradient w.r.t. the policy sums. */
export function ktoLoss(inputs: KtoLossInputs, options: KtoLossOptions = {}): KtoLossResult {
  return nativeFunction<KtoLossNative>("ktoLoss")({ ...inputs, ...options });
}

// ---------------------------------------------------------------------------------------------
// ORPO

export interface OrpoLossInputs {
  /** Policy log-prob sums over the answer tokens, float32 [P]; each average must be < 0. */
  policyChosen: Tensor;
  policyRejected: Tensor;
  /** Answer token counts, float32 [P] (clamped to ≥ 1 when averaging). */
  chosenLengths: Tensor;
  rejectedLengths: Tensor;
  /**
   * The chosen rows' mean token cross-entropy (TRL's ORPO: prompt + answer tokens), computed by the
   * caller, who also owns its gradient. Added to the loss and logged as nll_loss.
   */
  nll: number;
}

export interface OrpoLossOptions {
  /** λ of the ORPO paper (axolotl's orpo_alpha), > 0. Default 0.1. */
  beta?: number;
}

export interface OrpoMetrics extends PairMetrics {
  nll_loss: number;
  /** mean logσ(log_odds). */
  log_odds_ratio: number;
  /** mean log_odds. */
  log_odds_chosen: number;
}

type OrpoLossNative = (args: OrpoLossInputs & OrpoLossOptions) => PairLossResult<OrpoMetrics>;

/** ORPO's odds-ratio loss plus the given NLL; rewards and logps use average log-probs. */
export function orpoLoss(inputs: OrpoLossInputs, options: OrpoLossOptions = {}): PairLossResult<OrpoMetrics> {
  return nativeFunction<OrpoLossNative>("orpoLoss")({ ...inputs, ...options });
}

// ---------------------------------------------------------------------------------------------
// CPO / SimPO / AlphaPO

export type CpoLossType = "sigmoid" | "hinge" | "ipo" | "simpo" | "alphapo";

export interface CpoLossInputs {
  /** Policy log-prob sums over the answer tokens, float32 [P]. */
  policyChosen: Tensor;
  policyRejected: Tensor;
  /** Answer token counts, float32 [P]: required by ipo, simpo and alphapo (they average). */
  chosenLengths?: Tensor;
  rejectedLengths?: Tensor;
  /** The chosen rows' mean token cross-entropy (prompt masked); required unless cpoAlpha is 0. */
  nll?: number;
}

export interface CpoLossOptions {
  /** > 0. Default 0.1. */
  beta?: number;
  /** Default "sigmoid". "alphapo" = simpo with cpoAlpha 0, as TRL rewrites it. */
  lossType?: CpoLossType;
  /** ε of the sigmoid and simpo losses, in [0, 1]. Default 0. */
  labelSmoothing?: number;
  /** γ of SimPO. Default 0.5. */
  simpoGamma?: number;
  /** AlphaPO reward shape: scores become (1 − e^{−alpha·x})/alpha when ≠ 0. Default 0. */
  alpha?: number;
  /** Weight ≥ 0 of the NLL (behaviour cloning) term. Default 1 (0 for alphapo). */
  cpoAlpha?: number;
}

export interface CpoMetrics extends PairMetrics {
  nll_loss: number;
}

type CpoLossNative = (args: CpoLossInputs & CpoLossOptions) => PairLossResult<CpoMetrics>;

/** CPO / SimPO / AlphaPO (reference-free) plus cpoAlpha · nll. */
export function cpoLoss(inputs: CpoLossInputs, options: CpoLossOptions = {}): PairLossResult<CpoMetrics> {
  return nativeFunction<CpoLossNative>("cpoLoss")({ ...inputs, ...options });
}

// ---------------------------------------------------------------------------------------------
// GRPO

export interface GrpoLossInputs {
  /** Current policy per-token log-probs, float32 [B, T]. */
  logp: Tensor;
  /** Log-probs at generation time, float32 [B, T]; absent = on-policy (old = logp, detached). */
  oldLogp?: Tensor;
  /** Reference per-token log-probs, float32 [B, T]; required when beta != 0. */
  refLogp?: Tensor;
  /** One advantage per row, float32 [B]. */
  advantages: Tensor;
  /** Loss mask (completion × tool mask), float32 [B, T] of 0/1. */
  mask: Tensor;
}

export interface GrpoLossOptions {
  /** KL coefficient ≥ 0. Default 0 (no KL, no reference). */
  beta?: number;
  /** ε_low in [0, 1]. Default 0.2. */
  epsilon?: number;
  /** ε_high ≥ 0. Default epsilon. */
  epsilonHigh?: number;
  /** Cap > 0 on the unclipped ratio (two-sided clipping, INTELLECT-2). Default off. */
  delta?: number;
  /** Aggregation. Default "dapo". */
  lossType?: "grpo" | "bnpo" | "dr_grpo" | "dapo";
  /** "sequence" = GSPO. Default "token". */
  importanceSamplingLevel?: "token" | "sequence";
  /** dr_grpo's constant normaliser (required for dr_grpo), ≥ 1. */
  maxCompletionLength?: number;
  /**
   * dapo (required): loss-mask tokens of the whole generation batch summed over all processes;
   * the normaliser is max(numItemsInBatch, 1) / numProcesses.
   */
  numItemsInBatch?: number;
  /** World size. Default 1. */
  numProcesses?: number;
  /** grpo, bnpo and dr_grpo divide by it (1 in evaluation). Default 1. */
  gradientAccumulationSteps?: number;
}

export interface GrpoMetrics {
  /** Masked mean of the k3 KL; present only when beta != 0 (as in TRL). */
  kl?: number;
  "clip_ratio/low_mean": number;
  "clip_ratio/high_mean": number;
  "clip_ratio/region_mean": number;
  /** Min over rows of the row's low-clipped fraction (NaN when no row has tokens). */
  "clip_ratio/low_min": number;
  /** Max over rows of the row's high-clipped fraction (NaN when no row has tokens). */
  "clip_ratio/high_max": number;
}

export interface GrpoLossResult {
  loss: number;
  /** d loss / d logp, float32 [B, T] (0 where the mask is 0). */
  dLogp: Tensor;
  /** Σ mask. */
  maskedTokens: number;
  metrics: GrpoMetrics;
}

type GrpoLossNative = (args: GrpoLossInputs & GrpoLossOptions) => GrpoLossResult;

/** GRPO's clipped surrogate + β·k3 KL, aggregated as TRL's loss_type says. */
export function grpoLoss(inputs: GrpoLossInputs, options: GrpoLossOptions = {}): GrpoLossResult {
  return nativeFunction<GrpoLossNative>("grpoLoss")({ ...inputs, ...options });
}
