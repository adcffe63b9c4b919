// embedding({ table, ids }) -> out [...ids.shape, D]
// embeddingBackward({ dOut, ids, dTable }) -> dTable, with dOut[i] added to row ids[i] (in place)
// embeddingNaive / embeddingBackwardNaive: the same contracts as single-threaded naive loops
// (benchmark baselines).
// table, dTable: float32 [V, D]; ids: int32 of any rank ≥ 1, each in [0, V); dOut [...ids.shape, D].

#include <string>

#include "../cpu/naive.h"
#include "../kernels.h"
#include "args.h"
#include "batch_dims.h"
#include "registry.h"

namespace rlhf::binding {
namespace {

// Throws naming the first id outside [0, vocab), as ids[b, t] = value.
void checkIds(const OpArgs& args, const TensorWrap& ids, int64_t vocab, const char* vocabSource) {
  const int32_t* data = ids.data<int32_t>();
  const int64_t n = ids.numel();
  for (int64_t i = 0; i < n; ++i) {
    if (data[i] >= 0 && data[i] < vocab) continue;
    std::string index;
    int64_t rest = i;
    const auto& shape = ids.shape();
    for (size_t d = shape.size(); d-- > 0;) {
      index = std::to_string(rest % shape[d]) + (index.empty() ? "" : ", " + index);
      rest /= shape[d];
    }
    args.failRange("'ids' must be in [0, " + std::to_string(vocab) + ") (the rows of '" + vocabSource + "'), got ids[" +
                   index + "] = " + std::to_string(data[i]));
  }
}

Napi::Value RunEmbedding(const Napi::CallbackInfo& info, const char* op, void (*kernel)(const EmbeddingArgs&)) {
  OpArgs args(info, op);
  TensorWrap& table = args.tensor("table", DType::Float32, {"V", "D"});
  TensorWrap& ids = batchedTensor(args, "ids", DType::Int32, {}, 1);
  args.finish();
  const int64_t vocab = args.dim("V"), dim = args.dim("D");
  checkIds(args, ids, vocab, "table");
  std::vector<int64_t> shape = ids.shape();
  shape.push_back(dim);
  NewTensor out = newTensor(args.env(), DType::Float32, shape);
  kernel({table.data<float>(), ids.data<int32_t>(), out.t->data<float>(), ids.numel(), vocab, dim});
  return out.js;
}

Napi::Value RunEmbeddingBackward(const Napi::CallbackInfo& info, const char* op,
                                 void (*kernel)(const EmbeddingBackwardArgs&)) {
  OpArgs args(info, op);
  TensorWrap& ids = batchedTensor(args, "ids", DType::Int32, {}, 1);
  TensorWrap& dOut = args.tensor("dOut", DType::Float32, batchShape(args, "dOut", ids.shape().size(), {"D"}));
  TensorWrap& dTable = args.tensor("dTable", DType::Float32, {"V", "D"});
  args.finish();
  args.distinct(dTable, "dTable", dOut, "dOut");
  const int64_t vocab = args.dim("V");
  checkIds(args, ids, vocab, "dTable");
  kernel({dOut.data<float>(), ids.data<int32_t>(), dTable.data<float>(), ids.numel(), vocab, args.dim("D")});
  return info[0].As<Napi::Object>().Get("dTable");
}

Napi::Value Embedding(const Napi::CallbackInfo& info) { return RunEmbedding(info, "embedding", cpu::embedding); }
Napi::Value EmbeddingNaive(const Napi::CallbackInfo& info) {
  return RunEmbedding(info, "embeddingNaive", cpu::naiveEmbedding);
}
Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  return RunEmbeddingBackward(info, "embeddingBackward", cpu::embeddingBackward);
}
Napi::Value EmbeddingBackwardNaive(const Napi::CallbackInfo& info) {
  return RunEmbeddingBackward(info, "embeddingBackwardNaive", cpu::naiveEmbeddingBackward);
}

}  // namespace

RLHF_BINDING_EXPORTS(embedding) {
  exports.Set("embedding", Napi::Function::New(env, Embedding, "embedding"));
  exports.Set("embeddingBackward", Napi::Function::New(env, EmbeddingBackward, "embeddingBackward"));
  exports.Set("embeddingNaive", Napi::Function::New(env, EmbeddingNaive, "embeddingNaive"));
  exports.Set("embeddingBackwardNaive", Napi::Function::New(env, EmbeddingBackwardNaive, "embeddingBackwardNaive"));
}

}  // namespace rlhf::binding
