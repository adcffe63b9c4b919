// The preference and RL losses (kernels.h §9). Options are named after TRL's config keys.
//
// dpoLoss({ policyChosen, policyRejected, refChosen, refRejected, chosenLengths?, rejectedLengths?,
//           pairWeights?, beta?, lossType?, lossWeights?, labelSmoothing?, fDivergenceType?,
//           fAlphaDivergenceCoef?, discopopTau? })
//   -> { loss, dPolicyChosen, dPolicyRejected, metrics }
// ktoLoss({ policyLogps, refLogps, desirable, kl?, beta?, lossType?, desirableWeight?,
//           undesirableWeight? }) -> { loss, dPolicy, metrics }
// orpoLoss({ policyChosen, policyRejected, chosenLengths, rejectedLengths, nll, beta? })
//   -> { loss, dPolicyChosen, dPolicyRejected, metrics }
// cpoLoss({ policyChosen, policyRejected, chosenLengths?, rejectedLengths?, nll?, beta?, lossType?,
//           labelSmoothing?, simpoGamma?, alpha?, cpoAlpha? })
//   -> { loss, dPolicyChosen, dPolicyRejected, metrics }
// grpoLoss({ logp, oldLogp?, refLogp?, advantages, mask, beta?, epsilon?, epsilonHigh?, delta?,
//            lossType?, importanceSamplingLevel?, maxCompletionLength?, numItemsInBatch?,
//            numProcesses?, gradientAccumulationSteps? }) -> { loss, dLogp, maskedTokens, metrics }
// Sequence inputs are float32 [P] or [B] sums of completion-token log-probs; lengths are float32
// token counts; GRPO's inputs are float32 [B, T] per-token log-probs and a 0/1 mask. `metrics` maps
// TRL's metric names to numbers. Every tensor's values are checked (finite log-probs, integer
// lengths ≥ 0, 0/1 masks) before a kernel runs.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "../kernels.h"
#include "args.h"
#include "backend.h"
#include "element_checks.h"
#include "registry.h"

namespace rlhf::binding {
namespace {

// The bound of every numeric option: kernels take most scalars as float32.
constexpr double kHuge = std::numeric_limits<float>::max();

void checkFinite(const OpArgs& args, const char* key, const TensorWrap& t) {
  checkElements<float>(args, key, t, "must hold finite log-probs", [](float x) { return std::isfinite(x); });
}

void checkLengths(const OpArgs& args, const char* key, const TensorWrap& t) {
  checkElements<float>(args, key, t, "must hold token counts (integers >= 0)",
                     [](float x) { return (x >= 0.0f) & (x <= 1e9f) & (x == std::floor(x)); });
}

// A finite number > 0 (`fallback` when absent).
double positive(OpArgs& args, const char* key, double fallback) {
  const double v = args.number(key, fallback, -kHuge, kHuge);
  if (!(v > 0.0)) args.failRange("'" + std::string(key) + "' must be > 0, got " + formatNumber(v));
  return v;
}

// A required float32 [dim] tensor of finite log-prob sums.
TensorWrap& logps(OpArgs& args, const char* key, const char* dim) {
  TensorWrap& t = args.tensor(key, DType::Float32, {dim});
  checkFinite(args, key, t);
  return t;
}

// Lengths [P], optional unless `needed` names the loss type that requires them ("" if none does).
float* lengths(OpArgs& args, const char* key, const std::string& needed) {
  TensorWrap* t = args.optionalTensor(key, DType::Float32, {"P"});
  if (!t) {
    if (!needed.empty()) {
      args.fail("'" + std::string(key) + "' (completion token counts, float32 [P]) is required for lossType '" +
                needed + "'");
    }
    return nullptr;
  }
  checkLengths(args, key, *t);
  return t->data<float>();
}

// An option's raw value, for options whose type decides how to read them (OpArgs has already
// checked that info[0] is an options object).
Napi::Value peek(const Napi::CallbackInfo& info, const char* key) { return info[0].As<Napi::Object>().Get(key); }

// Fails when an option that the other options make necessary is absent: "'key' is required <why>".
void requireOption(const Napi::CallbackInfo& info, const OpArgs& args, const char* key, const std::string& why) {
  if (peek(info, key).IsUndefined()) args.fail("'" + std::string(key) + "' is required " + why);
}

// A string option or an array of them, as TRL's loss_type accepts.
std::vector<int> choiceOrList(const Napi::CallbackInfo& info, OpArgs& args, const char* key,
                              const std::vector<std::string>& allowed, int fallback) {
  if (!peek(info, key).IsArray()) return {args.choice(key, allowed, fallback)};
  std::vector<int> out = args.choiceList(key, allowed);
  if (out.empty()) args.failRange("'" + std::string(key) + "' must name at least one loss type");
  return out;
}

// TRL's names for the pair metrics.
Napi::Object pairMetrics(Napi::Env env, const PairMetrics& m) {
  Napi::Object metrics = Napi::Object::New(env);
  metrics.Set("rewards/chosen", m.rewardsChosen);
  metrics.Set("rewards/rejected", m.rewardsRejected);
  metrics.Set("rewards/accuracies", m.rewardsAccuracies);
  metrics.Set("rewards/margins", m.rewardsMargins);
  metrics.Set("logps/chosen", m.logpsChosen);
  metrics.Set("logps/rejected", m.logpsRejected);
  return metrics;
}

// { loss, dPolicyChosen, dPolicyRejected, metrics }: the result of every pairwise loss.
Napi::Object pairLossResult(Napi::Env env, double loss, const NewTensor& dChosen, const NewTensor& dRejected,
                            Napi::Object metrics) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("loss", loss);
  result.Set("dPolicyChosen", dChosen.js);
  result.Set("dPolicyRejected", dRejected.js);
  result.Set("metrics", metrics);
  return result;
}

// ---------------------------------------------------------------------------------------------
// DPO

// In DpoLossType's order.
const std::vector<std::string> kDpoLossTypes = {
    "sigmoid",  "hinge",    "ipo",       "robust",   "exo_pair", "nca_pair",     "bco_pair",
    "sppo_hard", "apo_zero", "apo_down", "discopop", "sigmoid_norm", "sft"};
const std::vector<std::string> kFDivergences = {"reverse_kl", "forward_kl", "js_divergence", "alpha_divergence"};

Napi::Value DpoLoss(const Napi::CallbackInfo& info) {
  OpArgs args(info, "dpoLoss");
  TensorWrap& policyChosen = logps(args, "policyChosen", "P");
  TensorWrap& policyRejected = logps(args, "policyRejected", "P");
  TensorWrap& refChosen = logps(args, "refChosen", "P");
  TensorWrap& refRejected = logps(args, "refRejected", "P");
  const int64_t pairs = args.dim("P");
  if (pairs < 1) args.failRange("needs at least one pair, got 'policyChosen' " + policyChosen.describe());

  const double beta = positive(args, "beta", 0.1);
  const std::vector<int> typeIndices = choiceOrList(info, args, "lossType", kDpoLossTypes, 0);
  std::vector<DpoLossType> types;
  for (int t : typeIndices) types.push_back(static_cast<DpoLossType>(t));
  auto uses = [&](DpoLossType t) { return std::find(types.begin(), types.end(), t) != types.end(); };
  const std::vector<double> weights = args.numberList("lossWeights", std::vector<double>(types.size(), 1.0));
  if (weights.size() != types.size()) {
    args.failRange("'lossWeights' must have one weight per loss type: got " + std::to_string(weights.size()) +
                   " weights for " + std::to_string(types.size()) + " loss types");
  }
  for (size_t k = 0; k < weights.size(); ++k) {
    if (weights[k] < 0.0) {
      args.failRange("'lossWeights[" + std::to_string(k) + "]' must be >= 0, got " + formatNumber(weights[k]));
    }
  }
  const double labelSmoothing = args.number("labelSmoothing", 0.0, -kHuge, kHuge);
  if (!(labelSmoothing >= 0.0 && labelSmoothing < 1.0)) {
    args.failRange("'labelSmoothing' must be in [0, 1), got " + formatNumber(labelSmoothing));
  }
  if (uses(DpoLossType::ExoPair) && labelSmoothing == 0.0) {
    args.failRange("'labelSmoothing' must be > 0 for lossType 'exo_pair' (the EXO paper recommends 1e-3)");
  }
  if (uses(DpoLossType::Robust) && labelSmoothing >= 0.5) {
    args.failRange("'labelSmoothing' must be in [0, 0.5) for lossType 'robust', got " + formatNumber(labelSmoothing));
  }
  const auto fDivergence = static_cast<FDivergence>(args.choice("fDivergenceType", kFDivergences, 0));
  const double fAlphaCoef = args.number("fAlphaDivergenceCoef", 0.5, -kHuge, kHuge);
  const double discopopTau = positive(args, "discopopTau", 0.05);

  // Lengths only matter to the length-normalised losses and sft.
  const std::string chosenNeed = uses(DpoLossType::Ipo)           ? "ipo"
                                 : uses(DpoLossType::SigmoidNorm) ? "sigmoid_norm"
                                 : uses(DpoLossType::Sft)         ? "sft"
                                                                  : "";
  const std::string rejectedNeed = chosenNeed == "sft" ? "" : chosenNeed;
  float* chosenLengths = lengths(args, "chosenLengths", chosenNeed);
  float* rejectedLengths = lengths(args, "rejectedLengths", rejectedNeed);
  TensorWrap* pairWeights = args.optionalTensor("pairWeights", DType::Float32, {"P"});
  if (pairWeights) {
    checkElements<float>(args, "pairWeights", *pairWeights, "must hold finite weights >= 0",
                       [](float x) { return std::isfinite(x) & (x >= 0.0f); });
  }
  args.finish();

  std::vector<float> lossWeights(weights.begin(), weights.end());
  NewTensor dChosen = newTensor(args.env(), DType::Float32, {pairs});
  NewTensor dRejected = newTensor(args.env(), DType::Float32, {pairs});
  double loss = 0.0;
  PairMetrics m{};
  backend::dpoLoss({pairs, policyChosen.data<float>(), policyRejected.data<float>(), refChosen.data<float>(),
                refRejected.data<float>(), chosenLengths, rejectedLengths,
                pairWeights ? pairWeights->data<float>() : nullptr, types.data(), lossWeights.data(),
                static_cast<int32_t>(types.size()), static_cast<float>(beta), static_cast<float>(labelSmoothing),
                static_cast<float>(fAlphaCoef), static_cast<float>(discopopTau), fDivergence, &loss,
                dChosen.t->data<float>(), dRejected.t->data<float>(), &m});

  return pairLossResult(args.env(), loss, dChosen, dRejected, pairMetrics(args.env(), m));
}

// ---------------------------------------------------------------------------------------------
// KTO

Napi::Value KtoLoss(const Napi::CallbackInfo& info) {
  OpArgs args(info, "ktoLoss");
  TensorWrap& policy = logps(args, "policyLogps", "B");
  TensorWrap& ref = logps(args, "refLogps", "B");
  TensorWrap& desirable = args.tensor("desirable", DType::Int32, {"B"});
  checkElements<int32_t>(args, "desirable", desirable, "must hold 1 (desirable) or 0 (undesirable)",
                       [](int32_t x) { return (x == 0) | (x == 1); });
  const int64_t rows = args.dim("B");
  if (rows < 1) args.failRange("needs at least one row, got 'policyLogps' " + policy.describe());
  const double beta = positive(args, "beta", 0.1);
  const auto lossType = static_cast<KtoLossType>(args.choice("lossType", {"kto", "apo_zero_unpaired"}, 0));
  const double desirableWeight = args.number("desirableWeight", 1.0, 0.0, kHuge);
  const double undesirableWeight = args.number("undesirableWeight", 1.0, 0.0, kHuge);
  // TRL clamps the gathered KL estimate at 0 before using it as the anchor z0.
  const bool needsKl = lossType == KtoLossType::Kto;
  if (needsKl) requireOption(info, args, "kl", "for lossType 'kto' (the KL anchor z0, a number)");
  const double klInput = args.number("kl", needsKl ? std::nullopt : std::optional<double>(0.0), -kHuge, kHuge);
  args.finish();
  const double kl = needsKl ? std::max(klInput, 0.0) : 0.0;

  NewTensor dPolicy = newTensor(args.env(), DType::Float32, {rows});
  double loss = 0.0;
  KtoMetrics m{};
  backend::ktoLoss({rows, policy.data<float>(), ref.data<float>(), desirable.data<int32_t>(), static_cast<float>(kl),
                static_cast<float>(beta), static_cast<float>(desirableWeight), static_cast<float>(undesirableWeight),
                lossType, &loss, dPolicy.t->data<float>(), &m});

  Napi::Env env = args.env();
  Napi::Object metrics = Napi::Object::New(env);
  metrics.Set("kl", kl);
  metrics.Set("rewards/chosen_sum", m.rewardsChosenSum);
  metrics.Set("rewards/rejected_sum", m.rewardsRejectedSum);
  metrics.Set("logps/chosen_sum", m.logpsChosenSum);
  metrics.Set("logps/rejected_sum", m.logpsRejectedSum);
  metrics.Set("count/chosen", static_cast<double>(m.chosenCount));
  metrics.Set("count/rejected", static_cast<double>(m.rejectedCount));
  // TRL logs a group's means only when the group is present, and the margin only when both are.
  if (m.chosenCount > 0) {
    metrics.Set("rewards/chosen", m.rewardsChosenSum / m.chosenCount);
    metrics.Set("logps/chosen", m.logpsChosenSum / m.chosenCount);
  }
  if (m.rejectedCount > 0) {
    metrics.Set("rewards/rejected", m.rewardsRejectedSum / m.rejectedCount);
    metrics.Set("logps/rejected", m.logpsRejectedSum / m.rejectedCount);
  }
  if (m.chosenCount > 0 && m.rejectedCount > 0) {
    metrics.Set("rewards/margins", m.rewardsChosenSum / m.chosenCount - m.rewardsRejectedSum / m.rejectedCount);
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("loss", loss);
  result.Set("dPolicy", dPolicy.js);
  result.Set("metrics", metrics);
  return result;
}

// ---------------------------------------------------------------------------------------------
// ORPO

Napi::Value OrpoLoss(const Napi::CallbackInfo& info) {
  OpArgs args(info, "orpoLoss");
  TensorWrap& policyChosen = logps(args, "policyChosen", "P");
  TensorWrap& policyRejected = logps(args, "policyRejected", "P");
  const int64_t pairs = args.dim("P");
  if (pairs < 1) args.failRange("needs at least one pair, got 'policyChosen' " + policyChosen.describe());
  // The odds need log(1 − e^a) with a = S/max(n, 1) < 0, that is every sum < 0 (p < 1).
  const char* negativeRule = "must hold log-prob sums < 0 (the odds need p < 1)";
  const auto negative = [](float x) { return x < 0.0f; };
  checkElements<float>(args, "policyChosen", policyChosen, negativeRule, negative);
  checkElements<float>(args, "policyRejected", policyRejected, negativeRule, negative);
  TensorWrap& chosenCounts = args.tensor("chosenLengths", DType::Float32, {"P"});
  checkLengths(args, "chosenLengths", chosenCounts);
  TensorWrap& rejectedCounts = args.tensor("rejectedLengths", DType::Float32, {"P"});
  checkLengths(args, "rejectedLengths", rejectedCounts);
  const double beta = positive(args, "beta", 0.1);
  requireOption(info, args, "nll", "(the chosen rows' mean token cross-entropy, a number)");
  const double nll = args.number("nll", std::nullopt, 0.0, kHuge);
  args.finish();

  NewTensor dChosen = newTensor(args.env(), DType::Float32, {pairs});
  NewTensor dRejected = newTensor(args.env(), DType::Float32, {pairs});
  double loss = 0.0;
  OddsRatioMetrics m{};
  backend::orpoLoss({pairs, policyChosen.data<float>(), policyRejected.data<float>(), chosenCounts.data<float>(),
                 rejectedCounts.data<float>(), static_cast<float>(beta), nll, &loss, dChosen.t->data<float>(),
                 dRejected.t->data<float>(), &m});

  Napi::Object metrics = pairMetrics(args.env(), m.pair);
  metrics.Set("nll_loss", m.nllLoss);
  metrics.Set("log_odds_ratio", m.logOddsRatio);
  metrics.Set("log_odds_chosen", m.logOddsChosen);
  return pairLossResult(args.env(), loss, dChosen, dRejected, metrics);
}

// ---------------------------------------------------------------------------------------------
// CPO / SimPO / AlphaPO

Napi::Value CpoLoss(const Napi::CallbackInfo& info) {
  OpArgs args(info, "cpoLoss");
  TensorWrap& policyChosen = logps(args, "policyChosen", "P");
  TensorWrap& policyRejected = logps(args, "policyRejected", "P");
  const int64_t pairs = args.dim("P");
  if (pairs < 1) args.failRange("needs at least one pair, got 'policyChosen' " + policyChosen.describe());
  const std::vector<std::string> names = {"sigmoid", "hinge", "ipo", "simpo", "alphapo"};
  const int typeIndex = args.choice("lossType", names, 0);
  // TRL's "alphapo" is sugar for simpo without the NLL term (cpo_alpha = 0).
  const bool alphapo = names[typeIndex] == "alphapo";
  const auto lossType = alphapo ? CpoLossType::Simpo : static_cast<CpoLossType>(typeIndex);
  const double beta = positive(args, "beta", 0.1);
  const double labelSmoothing = args.number("labelSmoothing", 0.0, 0.0, 1.0);
  const double simpoGamma = args.number("simpoGamma", 0.5, -kHuge, kHuge);
  const double alpha = args.number("alpha", 0.0, -kHuge, kHuge);
  const double cpoAlpha = args.number("cpoAlpha", alphapo ? 0.0 : 1.0, 0.0, kHuge);
  if (alphapo && cpoAlpha != 0.0) {
    args.failRange("'cpoAlpha' must be 0 (or absent) with lossType 'alphapo', got " + formatNumber(cpoAlpha));
  }
  // TRL skips the NLL when cpo_alpha == 0 and logs nll_loss = 0.
  if (cpoAlpha != 0.0) {
    requireOption(info, args, "nll", "unless 'cpoAlpha' is 0 (the chosen rows' mean token cross-entropy, a number)");
  }
  const double nllInput = args.number("nll", cpoAlpha == 0.0 ? std::optional<double>(0.0) : std::nullopt, 0.0, kHuge);
  const double nll = cpoAlpha == 0.0 ? 0.0 : nllInput;
  const bool averaged = lossType == CpoLossType::Ipo || lossType == CpoLossType::Simpo;
  const std::string need = averaged ? names[typeIndex] : "";
  float* chosenLengths = lengths(args, "chosenLengths", need);
  float* rejectedLengths = lengths(args, "rejectedLengths", need);
  args.finish();

  NewTensor dChosen = newTensor(args.env(), DType::Float32, {pairs});
  NewTensor dRejected = newTensor(args.env(), DType::Float32, {pairs});
  double loss = 0.0;
  CpoMetrics m{};
  backend::cpoLoss({pairs, policyChosen.data<float>(), policyRejected.data<float>(), chosenLengths, rejectedLengths,
                lossType, static_cast<float>(beta), static_cast<float>(labelSmoothing),
                static_cast<float>(simpoGamma), static_cast<float>(alpha), static_cast<float>(cpoAlpha), nll, &loss,
                dChosen.t->data<float>(), dRejected.t->data<float>(), &m});

  Napi::Object metrics = pairMetrics(args.env(), m.pair);
  metrics.Set("nll_loss", m.nllLoss);
  return pairLossResult(args.env(), loss, dChosen, dRejected, metrics);
}

// ---------------------------------------------------------------------------------------------
// GRPO

Napi::Value GrpoLoss(const Napi::CallbackInfo& info) {
  OpArgs args(info, "grpoLoss");
  TensorWrap& logp = args.tensor("logp", DType::Float32, {"B", "T"});
  checkFinite(args, "logp", logp);
  TensorWrap* oldLogp = args.optionalTensor("oldLogp", DType::Float32, {"B", "T"});
  if (oldLogp) checkFinite(args, "oldLogp", *oldLogp);
  TensorWrap& advantages = args.tensor("advantages", DType::Float32, {"B"});
  checkElements<float>(args, "advantages", advantages, "must be finite", [](float x) { return std::isfinite(x); });
  TensorWrap& mask = args.tensor("mask", DType::Float32, {"B", "T"});
  checkElements<float>(args, "mask", mask, "values must be 0 or 1", [](float x) { return (x == 0.0f) | (x == 1.0f); });
  const int64_t rows = args.dim("B"), seq = args.dim("T");
  if (rows < 1 || seq < 1) args.failRange("needs at least one row and one position, got 'logp' " + logp.describe());

  const double beta = args.number("beta", 0.0, 0.0, kHuge);
  TensorWrap* refLogp = args.optionalTensor("refLogp", DType::Float32, {"B", "T"});
  if (beta != 0.0 && !refLogp) args.fail("'refLogp' (float32 [B, T]) is required when 'beta' != 0");
  if (beta == 0.0) refLogp = nullptr;  // TRL neither uses nor logs the KL when beta == 0
  if (refLogp) checkFinite(args, "refLogp", *refLogp);
  const double epsilon = args.number("epsilon", 0.2, 0.0, 1.0);
  const double epsilonHigh = args.number("epsilonHigh", epsilon, 0.0, kHuge);
  // delta: absent = off; when given it must be > 0.
  const double delta = args.number("delta", 0.0, -kHuge, kHuge);
  if (!peek(info, "delta").IsUndefined() && !(delta > 0.0)) {
    args.failRange("'delta' must be > 0, got " + formatNumber(delta));
  }
  const auto lossType = static_cast<GrpoLossType>(args.choice("lossType", {"grpo", "bnpo", "dr_grpo", "dapo"}, 3));
  const auto level = static_cast<ImportanceLevel>(args.choice("importanceSamplingLevel", {"token", "sequence"}, 0));
  const bool drGrpo = lossType == GrpoLossType::DrGrpo, dapo = lossType == GrpoLossType::Dapo;
  if (drGrpo) requireOption(info, args, "maxCompletionLength", "for lossType 'dr_grpo' (its constant normaliser)");
  if (dapo) {
    requireOption(info, args, "numItemsInBatch",
                  "for lossType 'dapo' (loss-mask tokens of the generation batch over all processes)");
  }
  const int64_t maxCompletionLength = args.integer(
      "maxCompletionLength", drGrpo ? std::nullopt : std::optional<int64_t>(1), 1, std::numeric_limits<int32_t>::max());
  const double numItems = args.number("numItemsInBatch", dapo ? std::nullopt : std::optional<double>(1.0), 0.0, kHuge);
  const int64_t numProcesses = args.integer("numProcesses", 1, 1, 1 << 20);
  const int64_t gradAccum = args.integer("gradientAccumulationSteps", 1, 1, std::numeric_limits<int32_t>::max());
  args.finish();

  NewTensor dLogp = newTensor(args.env(), DType::Float32, {rows, seq});
  double loss = 0.0;
  GrpoMetrics m{};
  backend::grpoLoss({rows, seq, logp.data<float>(), oldLogp ? oldLogp->data<float>() : nullptr,
                 refLogp ? refLogp->data<float>() : nullptr, advantages.data<float>(), mask.data<float>(),
                 static_cast<float>(epsilon), static_cast<float>(epsilonHigh), static_cast<float>(beta),
                 static_cast<float>(delta), lossType, level, maxCompletionLength,
                 std::max(numItems, 1.0) / static_cast<double>(numProcesses), static_cast<int32_t>(gradAccum), &loss,
                 dLogp.t->data<float>(), &m});

  Napi::Env env = args.env();
  Napi::Object metrics = Napi::Object::New(env);
  if (refLogp) metrics.Set("kl", m.kl);
  metrics.Set("clip_ratio/low_mean", m.clipRatioLowMean);
  metrics.Set("clip_ratio/high_mean", m.clipRatioHighMean);
  metrics.Set("clip_ratio/region_mean", m.clipRatioRegionMean);
  metrics.Set("clip_ratio/low_min", m.clipRatioLowMin);
  metrics.Set("clip_ratio/high_max", m.clipRatioHighMax);
  Napi::Object result = Napi::Object::New(env);
  result.Set("loss", loss);
  result.Set("dLogp", dLogp.js);
  result.Set("maskedTokens", m.maskedTokens);
  result.Set("metrics", metrics);
  return result;
}

}  // namespace

RLHF_BINDING_EXPORTS(losses) {
  exports.Set("dpoLoss", Napi::Function::New(env, DpoLoss, "dpoLoss"));
  exports.Set("ktoLoss", Napi::Function::New(env, KtoLoss, "ktoLoss"));
  exports.Set("orpoLoss", Napi::Function::New(env, OrpoLoss, "orpoLoss"));
  exports.Set("cpoLoss", Napi::Function::New(env, CpoLoss, "cpoLoss"));
  exports.Set("grpoLoss", Napi::Function::New(env, GrpoLoss, "grpoLoss"));
}

}  // namespace rlhf::binding
