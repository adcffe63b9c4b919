// siluMul({ gate, up }) -> h = silu(gate) · up
// siluMulBackward({ gate, up, dOut }) -> { dGate, dUp }
// gate, up, dOut: float32 (or bfloat16 on the CUDA backend) of equal shape [tokens, intermediate];
// the outputs have their dtype.
#include "../kernels.h"
#include "args.h"
#include "backend.h"
#include "dispatch.h"
#include "registry.h"

namespace rlhf::binding {
namespace {

Napi::Value SiluMul(const Napi::CallbackInfo& info) {
  OpArgs args(info, "siluMul");
  TensorWrap& gate = args.floatTensor("gate", {"N", "F"});
  TensorWrap& up = args.floatTensor("up", {"N", "F"});
  args.finish();
  NewTensor out = newTensor(args.env(), args.floatDType(), gate.shape());
  withFloatType(args.floatDType(), [&](auto zero) {
    using T = decltype(zero);
    backend::siluMul(SiluMulArgsT<T>{gate.data<T>(), up.data<T>(), out.t->data<T>(), gate.numel()});
  });
  return out.js;
}

Napi::Value SiluMulBackward(const Napi::CallbackInfo& info) {
  OpArgs args(info, "siluMulBackward");
  TensorWrap& gate = args.floatTensor("gate", {"N", "F"});
  TensorWrap& up = args.floatTensor("up", {"N", "F"});
  TensorWrap& dOut = args.floatTensor("dOut", {"N", "F"});
  args.finish();
  NewTensor dGate = newTensor(args.env(), args.floatDType(), gate.shape());
  NewTensor dUp = newTensor(args.env(), args.floatDType(), gate.shape());
  withFloatType(args.floatDType(), [&](auto zero) {
    using T = decltype(zero);
    backend::siluMulBackward(SiluMulBackwardArgsT<T>{gate.data<T>(), up.data<T>(), dOut.data<T>(),
                                                     dGate.t->data<T>(), dUp.t->data<T>(), gate.numel()});
  });
  Napi::Object result = Napi::Object::New(args.env());
  result.Set("dGate", dGate.js);
  result.Set("dUp", dUp.js);
  return result;
}

}  // namespace

RLHF_BINDING_EXPORTS(swiglu) {
  exports.Set("siluMul", Napi::Function::New(env, SiluMul, "siluMul"));
  exports.Set("siluMulBackward", Napi::Function::New(env, SiluMulBackward, "siluMulBackward"));
}

}  // namespace rlhf::binding
