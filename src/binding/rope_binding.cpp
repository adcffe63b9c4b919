// ropeFrequencies({ headDim, theta, scaling?: "default" | "llama3", factor?, lowFreqFactor?,
//                   highFreqFactor?, originalMaxPositionEmbeddings? }) -> invFreq [D/2]
//   (the four llama3 keys are required with scaling "llama3" and rejected otherwise)
// rope({ x, positions, invFreq, attentionScaling?, inPlace? }) -> out [B, T, H, D] (x when inPlace)
// ropeBackward({ dOut, positions, invFreq, attentionScaling?, inPlace? }) -> dX (dOut when inPlace)
// ropeNaive({ x, positions, theta, attentionScaling? }) -> out: a benchmark baseline that recomputes
//   theta^(2j/D) for every element
// x, dOut: float32, or bfloat16 on the CUDA backend, [B, T, H, D] with D even (out and dX have
// their dtype); positions: int32 [B, T], each ≥ 0; invFreq: float32 [D/2] (on the backend's device).
#include <cmath>
#include <string>

#include "../cpu/naive.h"
#include "../kernels.h"
#include "args.h"
#include "backend.h"
#include "dispatch.h"
#include "element_checks.h"
#include "registry.h"

namespace rlhf::binding {
namespace {

constexpr int64_t kMaxHeadDim = 1 << 16;

// The rotated tensor, the positions and the cos/sin scale, checked; invFreq is read by the caller.
struct RopeInputs {
  TensorWrap* x;
  TensorWrap* positions;
  int64_t batch, seq, heads, headDim;
  float attentionScaling;
};

RopeInputs readRopeInputs(OpArgs& args, const char* xKey) {
  RopeInputs in{};
  in.x = &args.floatTensor(xKey, {"B", "T", "H", "D"});
  in.positions = &args.tensor("positions", DType::Int32, {"B", "T"});
  in.batch = args.dim("B");
  in.seq = args.dim("T");
  in.heads = args.dim("H");
  in.headDim = args.dim("D");
  if (in.headDim % 2 != 0) {
    args.failRange("the head dim D of '" + std::string(xKey) + "' must be even (RoPE rotates pairs), got " +
                   in.x->describe());
  }
  checkElements<int32_t>(args, "positions", *in.positions, "must be ≥ 0", [](int32_t p) { return p >= 0; });
  const double scaling = args.number("attentionScaling", 1.0, 0.0, 1e30);
  if (scaling <= 0.0) args.failRange("'attentionScaling' must be > 0, got 0");
  in.attentionScaling = static_cast<float>(scaling);
  return in;
}

// invFreq: float32 [D/2] of finite values.
const float* readInvFreq(OpArgs& args, int64_t headDim) {
  TensorWrap& invFreq = args.tensor("invFreq", DType::Float32, {"F"});
  if (args.dim("F") * 2 != headDim) {
    args.failRange("'invFreq' must have D/2 = " + std::to_string(headDim / 2) + " elements (D = " +
                   std::to_string(headDim) + "), got " + invFreq.describe());
  }
  checkElements<float>(args, "invFreq", invFreq, "must be finite", [](float f) { return std::isfinite(f); });
  return invFreq.data<float>();
}

// The output: a new tensor of x's dtype, or the input itself when inPlace.
struct RopeOutput {
  Napi::Value js;
  TensorWrap* t;
};
RopeOutput ropeOutput(OpArgs& args, const Napi::CallbackInfo& info, const char* xKey, TensorWrap& x, bool inPlace) {
  if (inPlace) return {info[0].As<Napi::Object>().Get(xKey), &x};
  NewTensor out = newTensor(args.env(), args.floatDType(), x.shape());
  return {out.js, out.t};
}

Napi::Value RopeFrequencies(const Napi::CallbackInfo& info) {
  OpArgs args(info, "ropeFrequencies");
  RopeFrequencyArgs p{};
  p.headDim = args.integer("headDim", std::nullopt, 2, kMaxHeadDim);
  if (p.headDim % 2 != 0) args.failRange("'headDim' must be even, got " + std::to_string(p.headDim));
  p.theta = args.number("theta", std::nullopt, 0.0, 1e30);
  if (p.theta <= 0.0) args.failRange("'theta' must be > 0, got 0");
  p.llama3 = args.choice("scaling", {"default", "llama3"}, 0) == 1;
  if (p.llama3) {
    // transformers' _validate_llama3_parameters: factor ≥ 1, high_freq_factor > low_freq_factor.
    p.factor = args.number("factor", std::nullopt, 1.0, 1e6);
    p.lowFreqFactor = args.number("lowFreqFactor", std::nullopt, 0.0, 1e6);
    if (p.lowFreqFactor <= 0.0) args.failRange("'lowFreqFactor' must be > 0, got 0");
    p.highFreqFactor = args.number("highFreqFactor", std::nullopt, 0.0, 1e6);
    if (p.highFreqFactor <= p.lowFreqFactor) {
      args.failRange("'highFreqFactor' (" + std::to_string(p.highFreqFactor) + ") must be greater than 'lowFreqFactor' (" +
                     std::to_string(p.lowFreqFactor) + ")");
    }
    p.originalMaxPositions = static_cast<double>(args.integer("originalMaxPositionEmbeddings", std::nullopt, 1, int64_t{1} << 40));
  } else {
    for (const char* key : {"factor", "lowFreqFactor", "highFreqFactor", "originalMaxPositionEmbeddings"}) {
      if (!std::isnan(args.number(key, std::nan(""), -1e300, 1e300))) {
        args.fail("'" + std::string(key) + "' applies only to scaling \"llama3\"");
      }
    }
  }
  args.finish();
  NewTensor invFreq = newTensor(args.env(), DType::Float32, {p.headDim / 2});
  p.invFreq = invFreq.t->data<float>();
  backend::ropeFrequencies(p);
  return invFreq.js;
}

Napi::Value Rope(const Napi::CallbackInfo& info) {
  OpArgs args(info, "rope");
  RopeInputs in = readRopeInputs(args, "x");
  const float* invFreq = readInvFreq(args, in.headDim);
  const bool inPlace = args.boolean("inPlace", false);
  args.finish();
  RopeOutput out = ropeOutput(args, info, "x", *in.x, inPlace);
  withFloatType(args.floatDType(), [&](auto zero) {
    using T = decltype(zero);
    backend::rope(RopeArgsT<T>{in.x->data<T>(), out.t->data<T>(), in.positions->data<int32_t>(), invFreq, in.batch,
                               in.seq, in.heads, in.headDim, in.attentionScaling});
  });
  return out.js;
}

Napi::Value RopeBackward(const Napi::CallbackInfo& info) {
  OpArgs args(info, "ropeBackward");
  RopeInputs in = readRopeInputs(args, "dOut");
  const float* invFreq = readInvFreq(args, in.headDim);
  const bool inPlace = args.boolean("inPlace", false);
  args.finish();
  RopeOutput dX = ropeOutput(args, info, "dOut", *in.x, inPlace);
  withFloatType(args.floatDType(), [&](auto zero) {
    using T = decltype(zero);
    backend::ropeBackward(RopeBackwardArgsT<T>{in.x->data<T>(), dX.t->data<T>(), in.positions->data<int32_t>(), invFreq,
                                               in.batch, in.seq, in.heads, in.headDim, in.attentionScaling});
  });
  return dX.js;
}

Napi::Value RopeNaive(const Napi::CallbackInfo& info) {
  OpArgs args(info, "ropeNaive");
  RopeInputs in = readRopeInputs(args, "x");
  const double theta = args.number("theta", std::nullopt, 0.0, 1e30);
  if (theta <= 0.0) args.failRange("'theta' must be > 0, got 0");
  args.finish();
  RopeOutput out = ropeOutput(args, info, "x", *in.x, false);
  cpu::naiveRope({in.x->data<float>(), out.t->data<float>(), in.positions->data<int32_t>(), nullptr, in.batch, in.seq,
                  in.heads, in.headDim, in.attentionScaling},
                 static_cast<float>(theta));
  return out.js;
}

}  // namespace

RLHF_BINDING_EXPORTS(rope) {
  exports.Set("ropeFrequencies", Napi::Function::New(env, RopeFrequencies, "ropeFrequencies"));
  exports.Set("rope", Napi::Function::New(env, Rope, "rope"));
  exports.Set("ropeBackward", Napi::Function::New(env, RopeBackward, "ropeBackward"));
  // The naive baselines of `rlhf-native bench` loop over host memory: CPU backend only.
  if (backend::kHostMemory) {
    exports.Set("ropeNaive", Napi::Function::New(env, RopeNaive, "ropeNaive"));
  }
}

}  // namespace rlhf::binding
