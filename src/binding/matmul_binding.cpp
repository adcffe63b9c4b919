// matmul({ a, b, transA?, transB?, alpha?, out?, accumulate? }) -> out
// matmulNaive({ same options }) -> out: the single-threaded triple loop, a benchmark baseline
// matmulBackward({ a, b, dC, transA?, transB?, wantA?, wantB?, dA?, dB? }) -> { dA, dB }
// a is [M, K] ([K, M] with transA) or batched [Bt, ., .]; b is [K, N] ([N, K] with transB) or
// batched. A rank-2 operand is broadcast over the batch of the other.
// a, b and dC are float32 (or bfloat16 on the CUDA backend) and share one dtype; new outputs and
// gradients have it. A given `out`, `dA` or `dB` has it too, or is float32 when a and b are
// bfloat16 (bf16 products accumulated into float32, e.g. master gradients).
#include <type_traits>

#include "../cpu/naive.h"
#include "../kernels.h"
#include "args.h"
#include "backend.h"
#include "dispatch.h"
#include "registry.h"

namespace rlhf::binding {
namespace {

struct MatmulShapes {
  TensorWrap* a;
  TensorWrap* b;
  bool transA, transB;
  int64_t batch, m, n, k, strideA, strideB;
  bool batched;
};

// Reads a, b and the transpose flags and checks that the inner dimensions agree.
MatmulShapes readOperands(OpArgs& args) {
  MatmulShapes s{};
  s.transA = args.boolean("transA", false);
  s.transB = args.boolean("transB", false);
  s.a = args.optionalFloatTensorAnyShape("a");
  s.b = args.optionalFloatTensorAnyShape("b");
  if (!s.a || !s.b) args.fail("'a' and 'b' are required " + std::string(dtypeName(args.floatDType())) + " tensors");
  const size_t ra = s.a->shape().size(), rb = s.b->shape().size();
  if (ra < 2 || ra > 3) args.failRange("'a' must have rank 2 or 3, got " + s.a->describe());
  if (rb < 2 || rb > 3) args.failRange("'b' must have rank 2 or 3, got " + s.b->describe());
  s.batched = ra == 3 || rb == 3;
  const char* aRows = s.transA ? "K" : "M";
  const char* aCols = s.transA ? "M" : "K";
  const char* bRows = s.transB ? "N" : "K";
  const char* bCols = s.transB ? "K" : "N";
  if (ra == 3) args.shape("a", *s.a, {"batch", aRows, aCols});
  else args.shape("a", *s.a, {aRows, aCols});
  if (rb == 3) args.shape("b", *s.b, {"batch", bRows, bCols});
  else args.shape("b", *s.b, {bRows, bCols});
  s.batch = s.batched ? args.dim("batch") : 1;
  s.m = args.dim("M");
  s.n = args.dim("N");
  s.k = args.dim("K");
  s.strideA = ra == 3 ? s.m * s.k : 0;
  s.strideB = rb == 3 ? s.k * s.n : 0;
  return s;
}

// The dtypes an accumulation target may have: the operands' float type, or float32 for bf16 operands.
std::vector<DType> targetTypes(const OpArgs& args) {
  if (args.floatDType() == DType::BFloat16) return {DType::BFloat16, DType::Float32};
  return {DType::Float32};
}

// Calls fn(TC{}) with TC the C++ type of a target tensor of `dtype` (T, or float for bf16 operands).
template <typename T, typename Fn>
void withTargetType(DType dtype, Fn&& fn) {
  if constexpr (std::is_same_v<T, bf16>) {
    if (dtype == DType::Float32) return fn(float{});
  }
  fn(T{});
}

// Shared by matmul and the benchmark baseline matmulNaive (CPU only: its backend refuses bf16).
Napi::Value RunMatmul(const Napi::CallbackInfo& info, const char* op, bool naive) {
  OpArgs args(info, op);
  MatmulShapes s = readOperands(args);
  const double alpha = args.number("alpha", 1.0, -1e30, 1e30);
  const bool accumulate = args.boolean("accumulate", false);
  std::vector<const char*> outDims = s.batched ? std::vector<const char*>{"batch", "M", "N"}
                                               : std::vector<const char*>{"M", "N"};
  TensorWrap* out = args.optionalTensorAnyShapeOf("out", targetTypes(args));
  if (out) args.shape("out", *out, outDims);
  args.finish();
  if (accumulate && !out) args.fail("'accumulate: true' needs an 'out' tensor to accumulate into");
  Napi::Value result;
  if (out) {
    args.distinct(*out, "out", *s.a, "a");
    args.distinct(*out, "out", *s.b, "b");
    result = info[0].As<Napi::Object>().Get("out");
  } else {
    std::vector<int64_t> shape = s.batched ? std::vector<int64_t>{s.batch, s.m, s.n} : std::vector<int64_t>{s.m, s.n};
    NewTensor t = newTensor(args.env(), args.floatDType(), shape);
    out = t.t;
    result = t.js;
  }
  withFloatType(args.floatDType(), [&](auto zero) {
    using T = decltype(zero);
    withTargetType<T>(out->dtype(), [&](auto target) {
      using TC = decltype(target);
      MatmulArgsT<T, TC> p{s.a->data<T>(), s.b->data<T>(), out->data<TC>(), s.batch, s.m, s.n, s.k,
                           s.transA, s.transB, s.strideA, s.strideB, s.m * s.n, static_cast<float>(alpha),
                           accumulate ? 1.0f : 0.0f};
      if constexpr (std::is_same_v<T, float> && std::is_same_v<TC, float>) {
        if (naive) return cpu::naiveMatmul(p);
      }
      backend::matmul(p);
    });
  });
  return result;
}

Napi::Value Matmul(const Napi::CallbackInfo& info) { return RunMatmul(info, "matmul", false); }
Napi::Value MatmulNaive(const Napi::CallbackInfo& info) { return RunMatmul(info, "matmulNaive", true); }

Napi::Value MatmulBackward(const Napi::CallbackInfo& info) {
  OpArgs args(info, "matmulBackward");
  MatmulShapes s = readOperands(args);
  std::vector<const char*> cDims = s.batched ? std::vector<const char*>{"batch", "M", "N"}
                                             : std::vector<const char*>{"M", "N"};
  TensorWrap& dC = args.floatTensor("dC", cDims);
  const bool wantA = args.boolean("wantA", true);
  const bool wantB = args.boolean("wantB", true);
  // Optional accumulation targets with the operands' own shapes.
  TensorWrap* dAIn = args.optionalTensorAnyShapeOf("dA", targetTypes(args));
  TensorWrap* dBIn = args.optionalTensorAnyShapeOf("dB", targetTypes(args));
  args.finish();
  if (dAIn && dAIn->shape() != s.a->shape()) args.failRange("'dA' must have the shape of 'a' (" + s.a->describe() + "), got " + dAIn->describe());
  if (dBIn && dBIn->shape() != s.b->shape()) args.failRange("'dB' must have the shape of 'b' (" + s.b->describe() + "), got " + dBIn->describe());
  Napi::Object result = Napi::Object::New(args.env());
  // Each wanted gradient: the given target, or a fresh zero tensor of the operands' dtype.
  auto target = [&](const char* key, bool wanted, TensorWrap* given, const std::vector<int64_t>& shape) -> TensorWrap* {
    if (!wanted) return nullptr;
    if (given) {
      result.Set(key, info[0].As<Napi::Object>().Get(key));
      return given;
    }
    NewTensor t = newTensor(args.env(), args.floatDType(), shape);
    result.Set(key, t.js);
    return t.t;
  };
  TensorWrap* dA = target("dA", wantA, dAIn, s.a->shape());
  TensorWrap* dB = target("dB", wantB, dBIn, s.b->shape());
  // Given targets accumulate; fresh ones start at zero, so accumulating is also right. dA and dB of
  // different dtypes (say a bf16 activation gradient and a float32 weight gradient) take a call each.
  withFloatType(args.floatDType(), [&](auto zero) {
    using T = decltype(zero);
    auto run = [&](TensorWrap* gradA, TensorWrap* gradB) {
      const DType dtype = (gradA ? gradA : gradB)->dtype();
      withTargetType<T>(dtype, [&](auto tg) {
        using TG = decltype(tg);
        backend::matmulBackward(MatmulBackwardArgsT<T, TG>{
            s.a->data<T>(), s.b->data<T>(), dC.data<T>(), gradA ? gradA->data<TG>() : nullptr,
            gradB ? gradB->data<TG>() : nullptr, s.batch, s.m, s.n, s.k, s.transA, s.transB, s.strideA, s.strideB,
            s.m * s.n, true});
      });
    };
    if (dA && dB && dA->dtype() != dB->dtype()) {
      run(dA, nullptr);
      run(nullptr, dB);
    } else if (dA || dB) {
      run(dA, dB);
    }
  });
  return result;
}

}  // namespace

RLHF_BINDING_EXPORTS(matmul) {
  exports.Set("matmul", Napi::Function::New(env, Matmul, "matmul"));
  exports.Set("matmulBackward", Napi::Function::New(env, MatmulBackward, "matmulBackward"));
  // The naive baselines of `rlhf-native bench` loop over host memory: CPU backend only.
  if (backend::kHostMemory) {
    exports.Set("matmulNaive", Napi::Function::New(env, MatmulNaive, "matmulNaive"));
  }
}

}  // namespace rlhf::binding
