// embedding({ table, ids }) -> out [...ids.shape, D]
// embeddingBackward({ dOut, ids, dTable }) -> dTable, with dOut[i] added to row ids[i] (in place)
// embeddingNaive / embeddingBackwardNaive: the same contracts as single-threaded naive loops
// (benchmark baselines).
// table, dTable: float32 [V, D]; ids: int32 of any rank ≥ 1, each in [0, V); dOut [...ids.shape, D].

#include <string>

#include "../cpu/naive.h"
#include "../kernels.h"
#include "args.h"
#include "backend.h"
#include "batch_dims.h"
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

Napi::Value Embedding(const Napi::CallbackInfo& info) { return RunEmbedding(info, "embedding", backend::embedding); }
Napi::Value EmbeddingNaive(const Napi::CallbackInfo& info) {
  return RunEmbedding(info, "embeddingNaive", cpu::naiveEmbedding);
}
Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  return RunEmbeddingBackward(info, "embeddingBackward", backend::embeddingBackward);
}
Napi::Value EmbeddingBackwardNaive(const Napi::CallbackInfo& info) {
  return RunEmbeddingBackward(info, "embeddingBackwardNaive", cpu::naiveEmbeddingBackward);
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
