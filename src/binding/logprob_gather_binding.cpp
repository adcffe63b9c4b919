// logprobGather({ hidden, weight, targets, temperature?, ignoreIndex?, chunkSize?, entropy?, logitMean?,
//                 argmax? }) -> { logp, lse, entropy?, logitMean?, argmax? }
// logprobGatherBackward({ hidden, weight, targets, lse, entropy?, dLogp, dEntropy?, temperature?,
//                         ignoreIndex?, chunkSize?, wantDWeight?, dWeight?, dHidden?,
//                         accumulateDHidden? }) -> { dHidden, dWeight? }
// hidden [N, D] and weight (lm_head) [V, D]: float32, or bfloat16 on the CUDA backend (one dtype
// for both, and for dHidden); targets [N] int32 (ids in [0, V) or ignoreIndex); the per-token
// vectors [N] (logp, lse, entropy, logitMean, dLogp, dEntropy) and dWeight [V, D] are always
// float32, argmax int32. See kernels.h §8.
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <utility>

#include "../kernels.h"
#include "args.h"
#include "backend.h"
#include "dispatch.h"
#include "registry.h"
#include "targets.h"

namespace rlhf::binding {
namespace {

constexpr int64_t kDefaultChunkSize = 256;

// The options both directions share.
struct GatherInputs {
  TensorWrap* hidden;
  TensorWrap* weight;
  TensorWrap* targets;
  int64_t n, dim, vocab;
  float invTemperature;
  int32_t ignoreIndex;
  int64_t chunkSize;
};

GatherInputs readInputs(OpArgs& args) {
  GatherInputs in{};
  in.hidden = &args.floatTensor("hidden", {"N", "D"});
  in.weight = &args.floatTensor("weight", {"V", "D"});
  in.targets = &args.tensor("targets", DType::Int32, {"N"});
  in.n = args.dim("N");
  in.dim = args.dim("D");
  in.vocab = args.dim("V");
  if (in.vocab < 1) args.failRange("'weight' must have at least one row (vocabulary size V >= 1), got " + in.weight->describe());
  if (in.n > std::numeric_limits<int32_t>::max() || in.vocab > std::numeric_limits<int32_t>::max()) {
    args.failRange("N and V must fit in int32, got N = " + std::to_string(in.n) + ", V = " + std::to_string(in.vocab));
  }
  const double temperature = args.number("temperature", 1.0, 0.0, std::numeric_limits<double>::max());
  in.invTemperature = static_cast<float>(1.0 / temperature);
  if (temperature <= 0.0 || !std::isfinite(in.invTemperature)) {
    std::ostringstream msg;
    msg << "'temperature' must be > 0 with 1/temperature a finite float32, got " << temperature;
    args.failRange(msg.str());
  }
  in.ignoreIndex = readIgnoreIndex(args);
  in.chunkSize = args.integer("chunkSize", kDefaultChunkSize, 1, std::numeric_limits<int32_t>::max());
  return in;
}

Napi::Value LogprobGather(const Napi::CallbackInfo& info) {
  OpArgs args(info, "logprobGather");
  const GatherInputs in = readInputs(args);
  const bool wantEntropy = args.boolean("entropy", false);
  const bool wantLogitMean = args.boolean("logitMean", false);
  const bool wantArgmax = args.boolean("argmax", false);
  args.finish();
  checkTargets(args, "targets", *in.targets, in.vocab, in.ignoreIndex);

  Napi::Object result = Napi::Object::New(args.env());
  auto output = [&](const char* key, DType dtype) {
    NewTensor t = newTensor(args.env(), dtype, {in.n});
    result.Set(key, t.js);
    return t.t;
  };
  float* logp = output("logp", DType::Float32)->data<float>();
  float* lse = output("lse", DType::Float32)->data<float>();
  float* entropy = wantEntropy ? output("entropy", DType::Float32)->data<float>() : nullptr;
  float* logitMean = wantLogitMean ? output("logitMean", DType::Float32)->data<float>() : nullptr;
  int32_t* argmax = wantArgmax ? output("argmax", DType::Int32)->data<int32_t>() : nullptr;
  withFloatType(args.floatDType(), [&](auto zero) {
    using T = decltype(zero);
    LogprobGatherArgsT<T> p{};
    p.hidden = in.hidden->data<T>();
    p.weight = in.weight->data<T>();
    p.targets = in.targets->data<int32_t>();
    p.n = in.n;
    p.dim = in.dim;
    p.vocab = in.vocab;
    p.invTemperature = in.invTemperature;
    p.ignoreIndex = in.ignoreIndex;
    p.chunkSize = in.chunkSize;
    p.logp = logp;
    p.lse = lse;
    p.entropy = entropy;
    p.logitMean = logitMean;
    p.argmax = argmax;
    backend::logprobGather(p);
  });
  return result;
}

Napi::Value LogprobGatherBackward(const Napi::CallbackInfo& info) {
  OpArgs args(info, "logprobGatherBackward");
  const GatherInputs in = readInputs(args);
  TensorWrap& lse = args.tensor("lse", DType::Float32, {"N"});
  TensorWrap* entropy = args.optionalTensor("entropy", DType::Float32, {"N"});
  TensorWrap& dLogp = args.tensor("dLogp", DType::Float32, {"N"});
  TensorWrap* dEntropy = args.optionalTensor("dEntropy", DType::Float32, {"N"});
  TensorWrap* dWeightIn = args.optionalTensor("dWeight", DType::Float32, {"V", "D"});
  const bool wantDWeight = args.boolean("wantDWeight", dWeightIn != nullptr);
  TensorWrap* dHiddenIn = args.optionalFloatTensor("dHidden", {"N", "D"});
  const bool accumulateDHidden = args.boolean("accumulateDHidden", false);
  args.finish();
  if (dEntropy && !entropy) args.fail("'dEntropy' needs 'entropy' (the forward's per-token entropy)");
  if (dWeightIn && !wantDWeight) args.fail("'dWeight' was given but 'wantDWeight' is false");
  if (accumulateDHidden && !dHiddenIn) args.fail("'accumulateDHidden: true' needs a 'dHidden' tensor to accumulate into");
  checkTargets(args, "targets", *in.targets, in.vocab, in.ignoreIndex);

  // Outputs must not share memory with any input (the kernel reads inputs while writing outputs).
  const std::pair<const TensorWrap*, const char*> inputs[] = {
      {in.hidden, "hidden"}, {in.weight, "weight"}, {in.targets, "targets"}, {&lse, "lse"},
      {entropy, "entropy"},  {&dLogp, "dLogp"},     {dEntropy, "dEntropy"}};
  for (const auto& [out, outKey] : {std::make_pair(dHiddenIn, "dHidden"), std::make_pair(dWeightIn, "dWeight")}) {
    if (!out) continue;
    for (const auto& [t, key] : inputs) {
      if (t) args.distinct(*out, outKey, *t, key);
    }
  }
  if (dHiddenIn && dWeightIn) args.distinct(*dHiddenIn, "dHidden", *dWeightIn, "dWeight");

  Napi::Object result = Napi::Object::New(args.env());
  const Napi::Object options = info[0].As<Napi::Object>();
  TensorWrap* dHidden = dHiddenIn;
  if (dHiddenIn) {
    result.Set("dHidden", options.Get("dHidden"));
  } else {
    NewTensor t = newTensor(args.env(), args.floatDType(), {in.n, in.dim});
    dHidden = t.t;
    result.Set("dHidden", t.js);
  }
  float* dWeight = nullptr;
  if (dWeightIn) {
    dWeight = dWeightIn->data<float>();
    result.Set("dWeight", options.Get("dWeight"));
  } else if (wantDWeight) {
    NewTensor t = newTensor(args.env(), DType::Float32, {in.vocab, in.dim});  // zero-filled
    dWeight = t.t->data<float>();
    result.Set("dWeight", t.js);
  }

  withFloatType(args.floatDType(), [&](auto zero) {
    using T = decltype(zero);
    LogprobGatherBackwardArgsT<T> p{};
    p.hidden = in.hidden->data<T>();
    p.weight = in.weight->data<T>();
    p.targets = in.targets->data<int32_t>();
    p.lse = lse.data<float>();
    p.entropy = entropy ? entropy->data<float>() : nullptr;
    p.dLogp = dLogp.data<float>();
    p.dEntropy = dEntropy ? dEntropy->data<float>() : nullptr;
    p.dHidden = dHidden->data<T>();
    p.dWeight = dWeight;
    p.n = in.n;
    p.dim = in.dim;
    p.vocab = in.vocab;
    p.invTemperature = in.invTemperature;
    p.ignoreIndex = in.ignoreIndex;
    p.chunkSize = in.chunkSize;
    p.accumulateDHidden = accumulateDHidden;
    backend::logprobGatherBackward(p);
  });
  return result;
}

}  // namespace

RLHF_BINDING_EXPORTS(logprob_gather) {
  exports.Set("logprobGather", Napi::Function::New(env, LogprobGather, "logprobGather"));
  exports.Set("logprobGatherBackward", Napi::Function::New(env, LogprobGatherBackward, "logprobGatherBackward"));
}

}  // namespace rlhf::binding
