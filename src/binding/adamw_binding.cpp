// adamw({ params, grads, m, v, lr, beta1?, beta2?, eps?, weightDecay?, step }) -> undefined
// One AdamW step (torch.optim.AdamW semantics) over lists of tensors, in place: params[i], m[i]
// and v[i] are updated from grads[i]. Tensors of one index have equal shapes; every tensor written
// has its own memory. Defaults are PyTorch's: betas (0.9, 0.999), eps 1e-8, weightDecay 0.01.
// `step` is the step number t ≥ 1 after incrementing (the bias corrections use β^t).
#include <string>
#include <vector>

#include "../kernels.h"
#include "args.h"
#include "backend.h"
#include "memory_overlap.h"
#include "registry.h"

namespace rlhf::binding {
namespace {

Napi::Value AdamW(const Napi::CallbackInfo& info) {
  OpArgs args(info, "adamw");
  const std::vector<TensorWrap*> params = args.tensorList("params", DType::Float32);
  const std::vector<TensorWrap*> grads = args.tensorList("grads", DType::Float32);
  const std::vector<TensorWrap*> m = args.tensorList("m", DType::Float32);
  const std::vector<TensorWrap*> v = args.tensorList("v", DType::Float32);
  const double lr = args.number("lr", std::nullopt, 0.0, 1e30);
  const double beta1 = args.number("beta1", 0.9, 0.0, 1.0);
  const double beta2 = args.number("beta2", 0.999, 0.0, 1.0);
  const double eps = args.number("eps", 1e-8, 0.0, 1e30);
  const double weightDecay = args.number("weightDecay", 0.01, 0.0, 1e30);
  const int64_t step = args.integer("step", std::nullopt, 1, INT64_C(1) << 53);
  args.finish();
  if (beta1 >= 1.0) args.failRange("'beta1' must be in [0, 1), got 1");
  if (beta2 >= 1.0) args.failRange("'beta2' must be in [0, 1), got 1");
  const size_t count = params.size();
  if (grads.size() != count || m.size() != count || v.size() != count) {
    args.failRange("'params', 'grads', 'm' and 'v' must have the same length, got " + std::to_string(count) + ", " +
                   std::to_string(grads.size()) + ", " + std::to_string(m.size()) + " and " + std::to_string(v.size()));
  }
  std::vector<MemorySpan> spans;
  for (size_t i = 0; i < count; ++i) {
    const std::string index = "[" + std::to_string(i) + "]";
    const std::pair<TensorWrap*, const char*> others[] = {{grads[i], "grads"}, {m[i], "m"}, {v[i], "v"}};
    for (const auto& [t, key] : others) {
      if (t->shape() != params[i]->shape()) {
        args.failRange("'" + std::string(key) + index + "' must have the shape of 'params" + index + "' (" +
                       params[i]->describe() + "), got " + t->describe());
      }
    }
    spans.push_back({params[i], "params" + index, true});
    spans.push_back({grads[i], "grads" + index, false});
    spans.push_back({m[i], "m" + index, true});
    spans.push_back({v[i], "v" + index, true});
  }
  checkNoOverlap(args, std::move(spans));
  std::vector<AdamWTensor> tensors;
  for (size_t i = 0; i < count; ++i) {
    tensors.push_back({params[i]->data<float>(), grads[i]->data<float>(), m[i]->data<float>(),
                       v[i]->data<float>(), params[i]->numel()});
  }
  backend::adamw({tensors.data(), static_cast<int64_t>(tensors.size()), lr, beta1, beta2, eps, weightDecay, step});
  return args.env().Undefined();
}

}  // namespace

RLHF_BINDING_EXPORTS(adamw) { exports.Set("adamw", Napi::Function::New(env, AdamW, "adamw")); }

}  // namespace rlhf::binding
