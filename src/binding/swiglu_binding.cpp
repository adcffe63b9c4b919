// siluMul({ gate, up }) -> h = silu(gate) · up
// siluMulBackward({ gate, up, dOut }) -> { dGate, dUp }
// gate, up, dOut: float32 of any (equal) shape, e.g. [tokens, intermediate].
#include "../kernels.h"
#include "args.h"
#include "registry.h"

namespace rlhf::binding {
namespace {

Napi::Value SiluMul(const Napi::CallbackInfo& info) {
  OpArgs args(info, "siluMul");
  TensorWrap& gate = args.tensor("gate", DType::Float32, {"N", "F"});
  TensorWrap& up = args.tensor("up", DType::Float32, {"N", "F"});
  args.finish();
  NewTensor out = newTensor(args.env(), DType::Float32, gate.shape());
  cpu::siluMul({gate.data<float>(), up.data<float>(), out.t->data<float>(), gate.numel()});
  return out.js;
}

Napi::Value SiluMulBackward(const Napi::CallbackInfo& info) {
  OpArgs args(info, "siluMulBackward");
  TensorWrap& gate = args.tensor("gate", DType::Float32, {"N", "F"});
  TensorWrap& up = args.tensor("up", DType::Float32, {"N", "F"});
  TensorWrap& dOut = args.tensor("dOut", DType::Float32, {"N", "F"});
  args.finish();
  NewTensor dGate = newTensor(args.env(), DType::Float32, gate.shape());
  NewTensor dUp = newTensor(args.env(), DType::Float32, gate.shape());
  cpu::siluMulBackward({gate.data<float>(), up.data<float>(), dOut.data<float>(), dGate.t->data<float>(),
                        dUp.t->data<float>(), gate.numel()});
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
