// attention({ q, k, v, keyMask?, scale?, causal? }) -> { out, lse }
// attentionBackward({ q, k, v, keyMask?, out, lse, dOut, scale?, causal? }) -> { dQ, dK, dV }
// attentionNaive / attentionBackwardNaive (same options): row-by-row single-threaded baselines for
//   benchmarks.
// q, out, dOut: [B, T, Hq, D]; k, v: [B, S, Hkv, D] with Hq % Hkv == 0, all float32 (or all bfloat16 on
// the CUDA backend; the outputs out, dQ, dK, dV take their dtype); keyMask: int32 [B, S] of 0/1
// (1 = attend); lse: float32 [B, Hq, T] whatever the dtype. causal (default true) needs T ≤ S: query t
// sits at key position S − T + t. scale defaults to 1/sqrt(D). The naive baselines are float32 only.
#include <cmath>
#include <string>
#include <type_traits>

#include "../cpu/naive.h"
#include "../kernels.h"
#include "args.h"
#include "backend.h"
#include "dispatch.h"
#include "element_checks.h"
#include "registry.h"

namespace rlhf::binding {
namespace {

struct AttentionInputs {
  TensorWrap* q;
  TensorWrap* k;
  TensorWrap* v;
  const int32_t* keyMask;
  int64_t batch, seqQ, seqK, headsQ, headsKv, headDim;
  float scale;
  bool causal;
};

AttentionInputs readAttentionInputs(OpArgs& args) {
  AttentionInputs in{};
  in.q = &args.floatTensor("q", {"B", "T", "Hq", "D"});
  in.k = &args.floatTensor("k", {"B", "S", "Hkv", "D"});
  in.v = &args.floatTensor("v", {"B", "S", "Hkv", "D"});
  in.batch = args.dim("B");
  in.seqQ = args.dim("T");
  in.seqK = args.dim("S");
  in.headsQ = args.dim("Hq");
  in.headsKv = args.dim("Hkv");
  in.headDim = args.dim("D");
  if (in.headDim < 1 || in.headsKv < 1) {
    args.failRange("'q' and 'k' need at least one head of at least one element, got 'q' " + in.q->describe() +
                   " and 'k' " + in.k->describe());
  }
  if (in.headsQ % in.headsKv != 0) {
    args.failRange("the query heads (Hq = " + std::to_string(in.headsQ) + " from 'q') must be a multiple of the kv heads (Hkv = " +
                   std::to_string(in.headsKv) + " from 'k')");
  }
  TensorWrap* mask = args.optionalTensor("keyMask", DType::Int32, {"B", "S"});
  in.keyMask = mask ? mask->data<int32_t>() : nullptr;
  if (mask) {
    checkElements<int32_t>(args, "keyMask", *mask, "must hold 0 (masked) or 1 (attend)",
                           [](int32_t m) { return (m == 0) | (m == 1); });
  }
  in.causal = args.boolean("causal", true);
  if (in.causal && in.seqQ > in.seqK) {
    args.failRange("causal attention needs T ≤ S (query t sits at key position S − T + t), got T = " +
                   std::to_string(in.seqQ) + " from 'q' and S = " + std::to_string(in.seqK) + " from 'k'");
  }
  const double scale = args.number("scale", 1.0 / std::sqrt(static_cast<double>(in.headDim)), 0.0, 1e30);
  if (scale <= 0.0) args.failRange("'scale' must be > 0, got 0");
  in.scale = static_cast<float>(scale);
  return in;
}

// The kernels: the backend's, or (naive = true, CPU backend only, float32) the naive baseline.
template <typename T>
void runForward(const AttentionArgsT<T>& a, bool naive) {
  if constexpr (std::is_same_v<T, float>) {
    if (naive) return cpu::naiveAttention(a);
  }
  backend::attention(a);
}
template <typename T>
void runBackward(const AttentionBackwardArgsT<T>& a, bool naive) {
  if constexpr (std::is_same_v<T, float>) {
    if (naive) return cpu::naiveAttentionBackward(a);
  }
  backend::attentionBackward(a);
}

Napi::Value RunAttention(const Napi::CallbackInfo& info, const char* op, bool naive) {
  OpArgs args(info, op);
  AttentionInputs in = readAttentionInputs(args);
  args.finish();
  NewTensor out = newTensor(args.env(), args.floatDType(), in.q->shape());
  NewTensor lse = newTensor(args.env(), DType::Float32, {in.batch, in.headsQ, in.seqQ});
  withFloatType(args.floatDType(), [&](auto zero) {
    using T = decltype(zero);
    runForward(AttentionArgsT<T>{in.q->data<T>(), in.k->data<T>(), in.v->data<T>(), in.keyMask, out.t->data<T>(),
                                 lse.t->data<float>(), in.batch, in.seqQ, in.seqK, in.headsQ, in.headsKv, in.headDim,
                                 in.scale, in.causal},
               naive);
  });
  Napi::Object result = Napi::Object::New(args.env());
  result.Set("out", out.js);
  result.Set("lse", lse.js);
  return result;
}

Napi::Value RunAttentionBackward(const Napi::CallbackInfo& info, const char* op, bool naive) {
  OpArgs args(info, op);
  AttentionInputs in = readAttentionInputs(args);
  TensorWrap& out = args.floatTensor("out", {"B", "T", "Hq", "D"});
  TensorWrap& lse = args.tensor("lse", DType::Float32, {"B", "Hq", "T"});
  TensorWrap& dOut = args.floatTensor("dOut", {"B", "T", "Hq", "D"});
  args.finish();
  NewTensor dQ = newTensor(args.env(), args.floatDType(), in.q->shape());
  NewTensor dK = newTensor(args.env(), args.floatDType(), in.k->shape());
  NewTensor dV = newTensor(args.env(), args.floatDType(), in.v->shape());
  withFloatType(args.floatDType(), [&](auto zero) {
    using T = decltype(zero);
    runBackward(AttentionBackwardArgsT<T>{in.q->data<T>(), in.k->data<T>(), in.v->data<T>(), in.keyMask,
                                          out.data<T>(), lse.data<float>(), dOut.data<T>(), dQ.t->data<T>(),
                                          dK.t->data<T>(), dV.t->data<T>(), in.batch, in.seqQ, in.seqK, in.headsQ,
                                          in.headsKv, in.headDim, in.scale, in.causal},
                naive);
  });
  Napi::Object result = Napi::Object::New(args.env());
  result.Set("dQ", dQ.js);
  result.Set("dK", dK.js);
  result.Set("dV", dV.js);
  return result;
}

Napi::Value Attention(const Napi::CallbackInfo& info) { return RunAttention(info, "attention", false); }
Napi::Value AttentionNaive(const Napi::CallbackInfo& info) { return RunAttention(info, "attentionNaive", true); }
Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  return RunAttentionBackward(info, "attentionBackward", false);
}
Napi::Value AttentionBackwardNaive(const Napi::CallbackInfo& info) {
  return RunAttentionBackward(info, "attentionBackwardNaive", true);
}

}  // namespace

RLHF_BINDING_EXPORTS(attention) {
  exports.Set("attention", Napi::Function::New(env, Attention, "attention"));
  exports.Set("attentionBackward", Napi::Function::New(env, AttentionBackward, "attentionBackward"));
  // The naive baselines of `rlhf-native bench` loop over host memory: CPU backend only.
  if (backend::kHostMemory) {
    exports.Set("attentionNaive", Napi::Function::New(env, AttentionNaive, "attentionNaive"));
    exports.Set("attentionBackwardNaive", Napi::Function::New(env, AttentionBackwardNaive, "attentionBackwardNaive"));
  }
}

}  // namespace rlhf::binding
