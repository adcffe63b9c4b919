// matmul({ a, b, transA?, transB?, alpha?, out?, accumulate? }) -> out
// matmulNaive({ same options }) -> out: the single-threaded triple loop, a benchmark baseline
// matmulBackward({ a, b, dC, transA?, transB?, wantA?, wantB?, dA?, dB? }) -> { dA, dB }
// a is [M, K] ([K, M] with transA) or batched [Bt, ., .]; b is [K, N] ([N, K] with transB) or
// batched. A rank-2 operand is broadcast over the batch of the other.
#include "../cpu/naive.h"
#include "../kernels.h"
#include "args.h"
#include "backend.h"
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
  s.a = args.optionalTensorAnyShape("a", DType::Float32);
  s.b = args.optionalTensorAnyShape("b", DType::Float32);
  if (!s.a || !s.b) args.fail("'a' and 'b' are required float32 tensors");
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

// Shared by matmul and the benchmark baseline matmulNaive.
Napi::Value RunMatmul(const Napi::CallbackInfo& info, const char* op, void (*kernel)(const MatmulArgs&)) {
  OpArgs args(info, op);
  MatmulShapes s = readOperands(args);
  const double alpha = args.number("alpha", 1.0, -1e30, 1e30);
  const bool accumulate = args.boolean("accumulate", false);
  std::vector<const char*> outDims = s.batched ? std::vector<const char*>{"batch", "M", "N"}
                                               : std::vector<const char*>{"M", "N"};
  TensorWrap* out = args.optionalTensor("out", DType::Float32, outDims);
  args.finish();
  if (accumulate && !out) args.fail("'accumulate: true' needs an 'out' tensor to accumulate into");
  Napi::Value result;
  if (out) {
    args.distinct(*out, "out", *s.a, "a");
    args.distinct(*out, "out", *s.b, "b");
    result = info[0].As<Napi::Object>().Get("out");
  } else {
    std::vector<int64_t> shape = s.batched ? std::vector<int64_t>{s.batch, s.m, s.n} : std::vector<int64_t>{s.m, s.n};
    NewTensor t = newTensor(args.env(), DType::Float32, shape);
    out = t.t;
    result = t.js;
  }
  MatmulArgs p{s.a->data<float>(), s.b->data<float>(), out->data<float>(), s.batch, s.m, s.n, s.k,
               s.transA, s.transB, s.strideA, s.strideB, s.m * s.n, static_cast<float>(alpha),
               accumulate ? 1.0f : 0.0f};
  kernel(p);
  return result;
}

Napi::Value Matmul(const Napi::CallbackInfo& info) { return RunMatmul(info, "matmul", backend::matmul); }
Napi::Value MatmulNaive(const Napi::CallbackInfo& info) { return RunMatmul(info, "matmulNaive", cpu::naiveMatmul); }

Napi::Value MatmulBackward(const Napi::CallbackInfo& info) {
  OpArgs args(info, "matmulBackward");
  MatmulShapes s = readOperands(args);
  std::vector<const char*> cDims = s.batched ? std::vector<const char*>{"batch", "M", "N"}
                                             : std::vector<const char*>{"M", "N"};
  TensorWrap& dC = args.tensor("dC", DType::Float32, cDims);
  const bool wantA = args.boolean("wantA", true);
  const bool wantB = args.boolean("wantB", true);
  // Optional accumulation targets with the operands' own shapes.
  TensorWrap* dAIn = args.optionalTensorAnyShape("dA", DType::Float32);
  TensorWrap* dBIn = args.optionalTensorAnyShape("dB", DType::Float32);
  args.finish();
  if (dAIn && dAIn->shape() != s.a->shape()) args.failRange("'dA' must have the shape of 'a' (" + s.a->describe() + "), got " + dAIn->describe());
  if (dBIn && dBIn->shape() != s.b->shape()) args.failRange("'dB' must have the shape of 'b' (" + s.b->describe() + "), got " + dBIn->describe());
  Napi::Object result = Napi::Object::New(args.env());
  float* dA = nullptr;
  float* dB = nullptr;
  if (wantA) {
    if (dAIn) {
      dA = dAIn->data<float>();
      result.Set("dA", info[0].As<Napi::Object>().Get("dA"));
    } else {
      NewTensor t = newTensor(args.env(), DType::Float32, s.a->shape());
      dA = t.t->data<float>();
      result.Set("dA", t.js);
    }
  }
  if (wantB) {
    if (dBIn) {
      dB = dBIn->data<float>();
      result.Set("dB", info[0].As<Napi::Object>().Get("dB"));
    } else {
      NewTensor t = newTensor(args.env(), DType::Float32, s.b->shape());
      dB = t.t->data<float>();
      result.Set("dB", t.js);
    }
  }
  // Given targets accumulate; freshly allocated ones start at zero, so accumulating is also right.
  MatmulBackwardArgs p{s.a->data<float>(), s.b->data<float>(), dC.data<float>(), dA, dB, s.batch, s.m, s.n,
                       s.k, s.transA, s.transB, s.strideA, s.strideB, s.m * s.n, true};
  backend::matmulBackward(p);
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
