// lora({ x, weight, bias?, a?, b?, scale, dropout?, seed? }) -> { y, xa? }
// loraBackward({ dY, x, weight, a?, b?, xa?, scale, dropout?, seed?, wantDx?, dX?, accumulateDx?,
//                dA?, dB?, wantWeight?, dWeight?, wantBias?, dBias? }) -> { dX?, dA?, dB?, dWeight?, dBias? }
// x, dX [..., K]; weight, dWeight [N, K]; bias, dBias [N]; a, dA [r, K]; b, dB [N, r];
// y, dY [..., N]; xa [..., r]. Without a and b (or with r = 0) it is a plain linear layer.
// Gradients given as tensors are accumulated into (dX only with accumulateDx); the others are
// returned fresh. The backward must get the forward's dropout and seed to regenerate its mask.
// x, weight, bias, y, dY and dX are float32 (or bfloat16 on the CUDA backend) and share one dtype;
// the adapters a, b, xa and the parameter gradients dA, dB, dWeight, dBias are always float32.
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "../kernels.h"
#include "args.h"
#include "backend.h"
#include "batch_dims.h"
#include "dispatch.h"
#include "registry.h"

namespace rlhf::binding {
namespace {

constexpr int64_t kMaxSeed = 9007199254740991;  // 2^53 − 1: every integer up to it is exact in JS
constexpr int64_t kNoSeed = -1;

struct LoraInputs {
  TensorWrap* x;
  TensorWrap* weight;
  TensorWrap* a;
  TensorWrap* b;
  size_t batchRank;
  int64_t m, k, n, rank;
  float scale, dropout;
  uint64_t seed;
};

// Reads x, weight, the adapters (both or neither), scale, dropout and seed.
LoraInputs readInputs(OpArgs& args) {
  LoraInputs in{};
  in.x = &batchedFloatTensor(args, "x", {"K"}, 2);
  in.batchRank = in.x->shape().size() - 1;
  in.weight = &args.floatTensor("weight", {"N", "K"});
  in.a = args.optionalTensor("a", DType::Float32, {"r", "K"});
  in.b = args.optionalTensor("b", DType::Float32, {"N", "r"});
  if (!in.a != !in.b) args.fail("'a' and 'b' (the LoRA adapters) must be given together");
  in.scale = static_cast<float>(args.number("scale", std::nullopt, -1e30, 1e30));
  const double dropout = args.number("dropout", 0.0, 0.0, 1.0);
  in.dropout = static_cast<float>(dropout);
  if (in.dropout >= 1.0f) {  // also a value just below 1 that rounds to 1 in float32
    std::ostringstream msg;
    msg.precision(17);
    msg << "'dropout' must be in [0, 1) (and round below 1 in float32), got " << dropout;
    args.failRange(msg.str());
  }
  const int64_t seed = args.integer("seed", kNoSeed, 0, kMaxSeed);
  if (seed == kNoSeed && in.dropout > 0.0f) {
    args.fail("'seed' is required when 'dropout' > 0 (the backward needs the same seed to rebuild the mask)");
  }
  in.seed = seed == kNoSeed ? 0 : static_cast<uint64_t>(seed);
  in.m = batchRows(args, in.batchRank);
  in.k = args.dim("K");
  in.n = args.dim("N");
  in.rank = in.a ? args.dim("r") : 0;
  return in;
}

// Rejects any written tensor that shares memory with another argument.
void checkDistinct(const OpArgs& args, const std::vector<std::pair<TensorWrap*, const char*>>& written,
                   const std::vector<std::pair<TensorWrap*, const char*>>& read) {
  for (size_t i = 0; i < written.size(); ++i) {
    if (!written[i].first) continue;
    for (const auto& [t, key] : read) {
      if (t) args.distinct(*written[i].first, written[i].second, *t, key);
    }
    for (size_t j = i + 1; j < written.size(); ++j) {
      if (written[j].first) args.distinct(*written[i].first, written[i].second, *written[j].first, written[j].second);
    }
  }
}

Napi::Value Lora(const Napi::CallbackInfo& info) {
  OpArgs args(info, "lora");
  LoraInputs in = readInputs(args);
  TensorWrap* bias = args.optionalFloatTensor("bias", {"N"});
  args.finish();
  std::vector<int64_t> yShape(in.x->shape().begin(), in.x->shape().end() - 1);
  std::vector<int64_t> xaShape = yShape;
  yShape.push_back(in.n);
  xaShape.push_back(in.rank);
  NewTensor y = newTensor(args.env(), args.floatDType(), yShape);
  Napi::Object result = Napi::Object::New(args.env());
  result.Set("y", y.js);
  float* xa = nullptr;
  if (in.a) {
    NewTensor t = newTensor(args.env(), DType::Float32, xaShape);
    xa = t.t->data<float>();
    result.Set("xa", t.js);
  }
  withFloatType(args.floatDType(), [&](auto zero) {
    using T = decltype(zero);
    backend::lora(LoraArgsT<T>{in.x->data<T>(), in.weight->data<T>(), bias ? bias->data<T>() : nullptr,
                               in.a ? in.a->data<float>() : nullptr, in.b ? in.b->data<float>() : nullptr,
                               y.t->data<T>(), xa, in.m, in.k, in.n, in.rank, in.scale, in.dropout, in.seed});
  });
  return result;
}

Napi::Value LoraBackward(const Napi::CallbackInfo& info) {
  OpArgs args(info, "loraBackward");
  LoraInputs in = readInputs(args);
  TensorWrap& dY = args.floatTensor("dY", batchShape(args, "dY", in.batchRank, {"N"}));
  TensorWrap* xa = args.optionalTensor("xa", DType::Float32, batchShape(args, "xa", in.batchRank, {"r"}));
  TensorWrap* dXIn = args.optionalFloatTensor("dX", batchShape(args, "dX", in.batchRank, {"K"}));
  const bool wantDx = args.boolean("wantDx", true);
  const bool accumulateDx = args.boolean("accumulateDx", false);
  TensorWrap* dAIn = args.optionalTensor("dA", DType::Float32, {"r", "K"});
  TensorWrap* dBIn = args.optionalTensor("dB", DType::Float32, {"N", "r"});
  TensorWrap* dWeightIn = args.optionalTensor("dWeight", DType::Float32, {"N", "K"});
  const bool wantWeight = args.boolean("wantWeight", dWeightIn != nullptr);
  TensorWrap* dBiasIn = args.optionalTensor("dBias", DType::Float32, {"N"});
  const bool wantBias = args.boolean("wantBias", dBiasIn != nullptr);
  args.finish();
  if (in.a && !xa) args.fail("'xa' (returned by lora()) is required with adapters");
  if (!in.a && xa) args.fail("'xa' was given without the adapters 'a' and 'b'");
  if (!in.a && (dAIn || dBIn)) args.fail("'dA'/'dB' were given without the adapters 'a' and 'b'");
  if (dXIn && !wantDx) args.fail("'dX' was given but 'wantDx' is false");
  if (accumulateDx && !dXIn) args.fail("'accumulateDx: true' needs a 'dX' tensor to accumulate into");
  if (dWeightIn && !wantWeight) args.fail("'dWeight' was given but 'wantWeight' is false");
  if (dBiasIn && !wantBias) args.fail("'dBias' was given but 'wantBias' is false");
  checkDistinct(args, {{dXIn, "dX"}, {dAIn, "dA"}, {dBIn, "dB"}, {dWeightIn, "dWeight"}, {dBiasIn, "dBias"}},
                {{&dY, "dY"}, {in.x, "x"}, {in.weight, "weight"}, {in.a, "a"}, {in.b, "b"}, {xa, "xa"}});

  // Each gradient: the given tensor (accumulated into), or a fresh zero tensor of `dtype` and `shape`.
  Napi::Object options = info[0].As<Napi::Object>();
  Napi::Object result = Napi::Object::New(args.env());
  auto output = [&](const char* key, TensorWrap* given, bool wanted, DType dtype,
                    const std::vector<int64_t>& shape) -> TensorWrap* {
    if (!wanted) return nullptr;
    if (given) {
      result.Set(key, options.Get(key));
      return given;
    }
    NewTensor t = newTensor(args.env(), dtype, shape);
    result.Set(key, t.js);
    return t.t;
  };
  TensorWrap* dX = output("dX", dXIn, wantDx, args.floatDType(), in.x->shape());
  TensorWrap* dA = output("dA", dAIn, in.a != nullptr, DType::Float32, {in.rank, in.k});
  TensorWrap* dB = output("dB", dBIn, in.a != nullptr, DType::Float32, {in.n, in.rank});
  TensorWrap* dWeight = output("dWeight", dWeightIn, wantWeight, DType::Float32, in.weight->shape());
  TensorWrap* dBias = output("dBias", dBiasIn, wantBias, DType::Float32, {in.n});
  auto floats = [](TensorWrap* t) { return t ? t->data<float>() : nullptr; };
  withFloatType(args.floatDType(), [&](auto zero) {
    using T = decltype(zero);
    backend::loraBackward(LoraBackwardArgsT<T>{
        dY.data<T>(), in.x->data<T>(), in.weight->data<T>(), floats(in.a), floats(in.b), floats(xa),
        dX ? dX->data<T>() : nullptr, floats(dA), floats(dB), floats(dWeight), floats(dBias), in.m, in.k, in.n,
        in.rank, in.scale, in.dropout, in.seed, accumulateDx});
  });
  return result;
}

}  // namespace

RLHF_BINDING_EXPORTS(lora) {
  exports.Set("lora", Napi::Function::New(env, Lora, "lora"));
  exports.Set("loraBackward", Napi::Function::New(env, LoraBackward, "loraBackward"));
}

}  // namespace rlhf::binding
