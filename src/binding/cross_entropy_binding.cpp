// crossEntropy({ logits, targets, ignoreIndex?, reduction? }) -> { loss, count, nll, lse }
// crossEntropyBackward({ logits, targets, lse, count, gradLoss?, reduction?, ignoreIndex? }) -> dLogits
// logits [N, V] float32 (or bfloat16 on the CUDA backend; dLogits has its dtype), targets [N] int32
// (ids in [0, V) or ignoreIndex); nll, lse [N] float32; reduction "mean" (over the non-ignored
// tokens, count clamped to >= 1) or "sum". See kernels.h §10.
#include <limits>

#include "../kernels.h"
#include "args.h"
#include "backend.h"
#include "dispatch.h"
#include "registry.h"
#include "targets.h"

namespace rlhf::binding {
namespace {

struct CrossEntropyInputs {
  TensorWrap* logits;
  TensorWrap* targets;
  int64_t n, vocab;
  int32_t ignoreIndex;
  bool sum;
};

CrossEntropyInputs readInputs(OpArgs& args) {
  CrossEntropyInputs in{};
  in.logits = &args.floatTensor("logits", {"N", "V"});
  in.targets = &args.tensor("targets", DType::Int32, {"N"});
  in.n = args.dim("N");
  in.vocab = args.dim("V");
  if (in.vocab < 1) args.failRange("'logits' must have at least one column (vocabulary size V >= 1), got " + in.logits->describe());
  in.ignoreIndex = readIgnoreIndex(args);
  in.sum = args.choice("reduction", {"mean", "sum"}, 0) == 1;
  return in;
}

Napi::Value CrossEntropy(const Napi::CallbackInfo& info) {
  OpArgs args(info, "crossEntropy");
  const CrossEntropyInputs in = readInputs(args);
  args.finish();
  checkTargets(args, "targets", *in.targets, in.vocab, in.ignoreIndex);
  NewTensor nll = newTensor(args.env(), DType::Float32, {in.n});
  NewTensor lse = newTensor(args.env(), DType::Float32, {in.n});
  double loss = 0.0;
  int64_t count = 0;
  withFloatType(args.floatDType(), [&](auto zero) {
    using T = decltype(zero);
    backend::crossEntropy(CrossEntropyArgsT<T>{in.logits->data<T>(), in.targets->data<int32_t>(), in.n, in.vocab,
                                               in.ignoreIndex, in.sum, nll.t->data<float>(), lse.t->data<float>(), &loss,
                                               &count});
  });
  Napi::Object result = Napi::Object::New(args.env());
  result.Set("loss", loss);
  result.Set("count", static_cast<double>(count));
  result.Set("nll", nll.js);
  result.Set("lse", lse.js);
  return result;
}

Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info) {
  OpArgs args(info, "crossEntropyBackward");
  const CrossEntropyInputs in = readInputs(args);
  TensorWrap& lse = args.tensor("lse", DType::Float32, {"N"});
  // Up to 2^53 so that any count a JS number holds exactly is accepted (e.g. a global token count).
  const int64_t count = args.integer("count", std::nullopt, 0, int64_t{1} << 53);
  const double gradLoss = args.number("gradLoss", 1.0, -std::numeric_limits<float>::max(), std::numeric_limits<float>::max());
  args.finish();
  checkTargets(args, "targets", *in.targets, in.vocab, in.ignoreIndex);
  NewTensor dLogits = newTensor(args.env(), args.floatDType(), {in.n, in.vocab});
  withFloatType(args.floatDType(), [&](auto zero) {
    using T = decltype(zero);
    backend::crossEntropyBackward(CrossEntropyBackwardArgsT<T>{in.logits->data<T>(), in.targets->data<int32_t>(),
                                                               lse.data<float>(), in.n, in.vocab, in.ignoreIndex, in.sum,
                                                               count, static_cast<float>(gradLoss),
                                                               dLogits.t->data<T>()});
  });
  return dLogits.js;
}

}  // namespace

RLHF_BINDING_EXPORTS(cross_entropy) {
  exports.Set("crossEntropy", Napi::Function::New(env, CrossEntropy, "crossEntropy"));
  exports.Set("crossEntropyBackward", Napi::Function::New(env, CrossEntropyBackward, "crossEntropyBackward"));
}

}  // namespace rlhf::binding
