// rmsNorm({ x, weight, eps? }) -> { y, rstd }
// rmsNormBackward({ dY, x, weight, rstd, dX?, accumulate?, wantWeight?, dWeight? }) -> { dX, dWeight? }
// rmsNormNaive / rmsNormBackwardNaive: the same contracts as single-threaded naive loops
// (benchmark baselines).
// x, y, dY, dX: float32, or bfloat16 on the CUDA backend, [..., D] (rows = the product of the
// leading dims, e.g. [B, T, D], or [B, T, H, head_dim] for Qwen3's q/k norm); weight [D] of the same
// dtype; rstd [...] (x's leading dims) and dWeight [D]: float32. The naive baselines take float32 only.
#include <sstream>
#include <type_traits>

#include "../cpu/naive.h"
#include "../kernels.h"
#include "args.h"
#include "backend.h"
#include "batch_dims.h"
#include "dispatch.h"
#include "registry.h"

namespace rlhf::binding {
namespace {

// `naive`: run the single-threaded float32 baseline (CPU backend only) instead of the backend's kernel.
Napi::Value RunRmsNorm(const Napi::CallbackInfo& info, const char* op, bool naive) {
  OpArgs args(info, op);
  TensorWrap& x = batchedFloatTensor(args, "x", {"D"}, 2);
  TensorWrap& weight = args.floatTensor("weight", {"D"});
  const double eps = args.number("eps", 1e-6, 0.0, 1.0);
  args.finish();
  if (static_cast<float>(eps) == 0.0f) {
    std::ostringstream msg;
    msg << "'eps' must be > 0 in float32 (an all-zero row would divide by zero), got " << eps;
    args.failRange(msg.str());
  }
  const size_t batchRank = x.shape().size() - 1;
  const int64_t rows = batchRows(args, batchRank), dim = args.dim("D");
  if (dim == 0) args.failRange("'x' must have a last dimension ≥ 1, got " + x.describe());
  NewTensor y = newTensor(args.env(), args.floatDType(), x.shape());
  NewTensor rstd = newTensor(args.env(), DType::Float32, std::vector<int64_t>(x.shape().begin(), x.shape().end() - 1));
  withFloatType(args.floatDType(), [&](auto zero) {
    using T = decltype(zero);
    const RmsNormArgsT<T> p{x.data<T>(), weight.data<T>(), y.t->data<T>(), rstd.t->data<float>(), rows, dim,
                            static_cast<float>(eps)};
    if constexpr (std::is_same_v<T, float>) {
      if (naive) {
        cpu::naiveRmsNorm(p);
        return;
      }
    }
    backend::rmsNorm(p);
  });
  Napi::Object result = Napi::Object::New(args.env());
  result.Set("y", y.js);
  result.Set("rstd", rstd.js);
  return result;
}

Napi::Value RunRmsNormBackward(const Napi::CallbackInfo& info, const char* op, bool naive) {
  OpArgs args(info, op);
  TensorWrap& x = batchedFloatTensor(args, "x", {"D"}, 2);
  const size_t batchRank = x.shape().size() - 1;
  TensorWrap& dY = args.floatTensor("dY", batchShape(args, "dY", batchRank, {"D"}));
  TensorWrap& weight = args.floatTensor("weight", {"D"});
  TensorWrap& rstd = args.tensor("rstd", DType::Float32, batchShape(args, "rstd", batchRank, {}));
  TensorWrap* dXIn = args.optionalFloatTensor("dX", batchShape(args, "dX", batchRank, {"D"}));
  const bool accumulate = args.boolean("accumulate", false);
  const bool wantWeight = args.boolean("wantWeight", true);
  TensorWrap* dWeightIn = args.optionalTensor("dWeight", DType::Float32, {"D"});
  args.finish();
  if (accumulate && !dXIn) args.fail("'accumulate: true' needs a 'dX' tensor to accumulate into");
  if (dWeightIn && !wantWeight) args.fail("'dWeight' was given but 'wantWeight' is false");
  const std::pair<const TensorWrap*, const char*> inputs[] = {{&x, "x"}, {&dY, "dY"}, {&weight, "weight"}, {&rstd, "rstd"}};
  for (const auto& [t, key] : inputs) {
    if (dXIn) args.distinct(*dXIn, "dX", *t, key);
    if (dWeightIn) args.distinct(*dWeightIn, "dWeight", *t, key);
  }
  if (dXIn && dWeightIn) args.distinct(*dXIn, "dX", *dWeightIn, "dWeight");

  Napi::Object options = info[0].As<Napi::Object>();
  Napi::Object result = Napi::Object::New(args.env());
  TensorWrap* dX = dXIn;
  if (dXIn) {
    result.Set("dX", options.Get("dX"));
  } else {
    NewTensor t = newTensor(args.env(), args.floatDType(), x.shape());
    dX = t.t;
    result.Set("dX", t.js);
  }
  float* dWeight = nullptr;
  if (dWeightIn) {
    dWeight = dWeightIn->data<float>();
    result.Set("dWeight", options.Get("dWeight"));
  } else if (wantWeight) {
    NewTensor t = newTensor(args.env(), DType::Float32, weight.shape());  // zeros: accumulating starts at 0
    dWeight = t.t->data<float>();
    result.Set("dWeight", t.js);
  }
  withFloatType(args.floatDType(), [&](auto zero) {
    using T = decltype(zero);
    const RmsNormBackwardArgsT<T> p{dY.data<T>(), x.data<T>(), weight.data<T>(), rstd.data<float>(), dX->data<T>(),
                                    dWeight, batchRows(args, batchRank), args.dim("D"), accumulate};
    if constexpr (std::is_same_v<T, float>) {
      if (naive) {
        cpu::naiveRmsNormBackward(p);
        return;
      }
    }
    backend::rmsNormBackward(p);
  });
  return result;
}

Napi::Value RmsNorm(const Napi::CallbackInfo& info) { return RunRmsNorm(info, "rmsNorm", false); }
Napi::Value RmsNormNaive(const Napi::CallbackInfo& info) { return RunRmsNorm(info, "rmsNormNaive", true); }
Napi::Value RmsNormBackward(const Napi::CallbackInfo& info) {
  return RunRmsNormBackward(info, "rmsNormBackward", false);
}
Napi::Value RmsNormBackwardNaive(const Napi::CallbackInfo& info) {
  return RunRmsNormBackward(info, "rmsNormBackwardNaive", true);
}

}  // namespace

RLHF_BINDING_EXPORTS(rmsnorm) {
  exports.Set("rmsNorm", Napi::Function::New(env, RmsNorm, "rmsNorm"));
  exports.Set("rmsNormBackward", Napi::Function::New(env, RmsNormBackward, "rmsNormBackward"));
  // The naive baselines of `rlhf-native bench` loop over host memory: CPU backend only.
  if (backend::kHostMemory) {
    exports.Set("rmsNormNaive", Napi::Function::New(env, RmsNormNaive, "rmsNormNaive"));
    exports.Set("rmsNormBackwardNaive", Napi::Function::New(env, RmsNormBackwardNaive, "rmsNormBackwardNaive"));
  }
}

}  // namespace rlhf::binding
