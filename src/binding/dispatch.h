// Calling a kernel with the C++ element type of an op's float tensors (OpArgs::floatDType()):
//   withFloatType(args.floatDType(), [&](auto zero) {
//     using T = decltype(zero);  // float, or bf16 on a backend that computes on it
//     backend::siluMul(SiluMulArgsT<T>{gate.data<T>(), ...});
//   });
// On the CPU backend only the float instantiation is compiled (OpArgs already refused bfloat16).
#pragma once

#include "backend.h"

namespace rlhf::binding {

template <typename Fn>
decltype(auto) withFloatType(DType dtype, Fn&& fn) {
  if constexpr (backend::kComputesBf16) {
    if (dtype == DType::BFloat16) return fn(bf16{});
  }
  return fn(float{});
}

}  // namespace rlhf::binding
