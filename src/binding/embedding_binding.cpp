// embedding({ table, ids }) -> out [...ids.shape, D]
// embeddingBackward({ dOut, ids, dTable }) -> dTable, with dOut[i] added to row ids[i] (in place)
// embeddingNaive / embeddingBackwardNaive: the same contracts as single-threaded naive loops
// (benchmark baselines).
// table: float32 (or bfloat16 on the CUDA backend) [V, D]; out and dOut have its dtype;
// dTable: float32 [V, D] (the trained parameter's gradient); ids: int32 of any rank ≥ 1, each in
// [0, V); out, dOut [...ids.shape, D]. The naive baselines take float32 only.

#include <string>
#include <type_traits>

#include "../cpu/naive.h"
#include "../kernels.h"
#include "args.h"
#include "backend.h"
#include "batch_dims.h"
#include "dispatch.h"
#include "element_checks.h"
#include "registry.h"

namespace rlhf::binding {
namespace {

// Throws naming the first id outside [0, vocab) and its position.
void checkIds(const OpArgs& args, const TensorWrap& ids, int64_t vocab, const char* vocabSource) {
  checkElements<int32_t>(args, "ids", ids,
                         "must be in [0, " + std::to_string(vocab) + ") (the rows of '" + vocabSource + "')",
                         [vocab](int32_t id) { return (id >= 0) & (id < vocab); });
}

// `naive`: run the single-threaded float32 baseline (CPU backend only) instead of the backend's kernel.
Napi::Value RunEmbedding(const Napi::CallbackInfo& info, const char* op, bool naive) {
  OpArgs args(info, op);
  TensorWrap& table = args.floatTensor("table", {"V", "D"});
  TensorWrap& ids = batchedTensor(args, "ids", DType::Int32, {}, 1);
  args.finish();
  const int64_t vocab = args.dim("V"), dim = args.dim("D");
  checkIds(args, ids, vocab, "table");
  std::vector<int64_t> shape = ids.shape();
  shape.push_back(dim);
  NewTensor out = newTensor(args.env(), args.floatDType(), shape);
  withFloatType(args.floatDType(), [&](auto zero) {
    using T = decltype(zero);
    const EmbeddingArgsT<T> p{table.data<T>(), ids.data<int32_t>(), out.t->data<T>(), ids.numel(), vocab, dim};
    if constexpr (std::is_same_v<T, float>) {
      if (naive) {
        cpu::naiveEmbedding(p);
        return;
      }
    }
    backend::embedding(p);
  });
  return out.js;
}

Napi::Value RunEmbeddingBackward(const Napi::CallbackInfo& info, const char* op, bool naive) {
  OpArgs args(info, op);
  TensorWrap& ids = batchedTensor(args, "ids", DType::Int32, {}, 1);
  TensorWrap& dOut = args.floatTensor("dOut", batchShape(args, "dOut", ids.shape().size(), {"D"}));
  TensorWrap& dTable = args.tensor("dTable", DType::Float32, {"V", "D"});
  args.finish();
  args.distinct(dTable, "dTable", dOut, "dOut");
  const int64_t vocab = args.dim("V");
  checkIds(args, ids, vocab, "dTable");
  withFloatType(args.floatDType(), [&](auto zero) {
    using T = decltype(zero);
    const EmbeddingBackwardArgsT<T> p{dOut.data<T>(), ids.data<int32_t>(), dTable.data<float>(), ids.numel(), vocab,
                                      args.dim("D")};
    if constexpr (std::is_same_v<T, float>) {
      if (naive) {
        cpu::naiveEmbeddingBackward(p);
        return;
      }
    }
    backend::embeddingBackward(p);
  });
  return info[0].As<Napi::Object>().Get("dTable");
}

Napi::Value Embedding(const Napi::CallbackInfo& info) { return RunEmbedding(info, "embedding", false); }
Napi::Value EmbeddingNaive(const Napi::CallbackInfo& info) { return RunEmbedding(info, "embeddingNaive", true); }
Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  return RunEmbeddingBackward(info, "embeddingBackward", false);
}
Napi::Value EmbeddingBackwardNaive(const Napi::CallbackInfo& info) {
  return RunEmbeddingBackward(info, "embeddingBackwardNaive", true);
}

}  // namespace

RLHF_BINDING_EXPORTS(embedding) {
  exports.Set("embedding", Napi::Function::New(env, Embedding, "embedding"));
  exports.Set("embeddingBackward", Napi::Function::New(env, EmbeddingBackward, "embeddingBackward"));
  // The naive baselines of `rlhf-native bench` loop over host memory: CPU backend only.
  if (backend::kHostMemory) {
    exports.Set("embeddingNaive", Napi::Function::New(env, EmbeddingNaive, "embeddingNaive"));
    exports.Set("embeddingBackwardNaive", Napi::Function::New(env, EmbeddingBackwardNaive, "embeddingBackwardNaive"));
  }
}

}  // namespace rlhf::binding
