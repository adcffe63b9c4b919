// gradNorm({ tensors }) -> number: sqrt(Σ x²) over every element of every tensor, in float64.
// clipGradNorm({ tensors, maxNorm }) -> { totalNorm, clipCoef }: as torch.nn.utils.clip_grad_norm_,
// scales every tensor in place by clipCoef = min(1, maxNorm / (totalNorm + 1e-6)) (no pass when it
// is 1). A non-finite totalNorm (an inf or NaN gradient) leaves the tensors untouched and returns
// clipCoef = 1 with the non-finite totalNorm, so the caller can skip the step (PyTorch would instead
// multiply by 0 or NaN, turning every gradient into 0 or NaN).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../kernels.h"
#include "args.h"
#include "backend.h"
#include "memory_overlap.h"
#include "registry.h"

namespace rlhf::binding {
namespace {

constexpr double kClipEpsilon = 1e-6;  // torch.nn.utils.clip_grad_norm_'s

// The tensors as the kernels' TensorList (the vectors own the arrays it points to).
struct ListArrays {
  std::vector<float*> data;
  std::vector<int64_t> counts;
  explicit ListArrays(const std::vector<TensorWrap*>& tensors) {
    for (TensorWrap* t : tensors) {
      data.push_back(t->data<float>());
      counts.push_back(t->numel());
    }
  }
  TensorList list() const { return {data.data(), counts.data(), static_cast<int64_t>(data.size())}; }
};

Napi::Value GradNorm(const Napi::CallbackInfo& info) {
  OpArgs args(info, "gradNorm");
  const std::vector<TensorWrap*> tensors = args.tensorList("tensors", DType::Float32);
  args.finish();
  return Napi::Number::New(args.env(), std::sqrt(backend::sumOfSquares(ListArrays(tensors).list())));
}

Napi::Value ClipGradNorm(const Napi::CallbackInfo& info) {
  OpArgs args(info, "clipGradNorm");
  const std::vector<TensorWrap*> tensors = args.tensorList("tensors", DType::Float32);
  const double maxNorm = args.number("maxNorm", std::nullopt, 0.0, 1e30);
  args.finish();
  if (maxNorm == 0.0) args.failRange("'maxNorm' must be > 0, got 0");
  std::vector<MemorySpan> spans;
  for (size_t i = 0; i < tensors.size(); ++i) spans.push_back({tensors[i], "tensors[" + std::to_string(i) + "]", true});
  checkNoOverlap(args, std::move(spans));
  const ListArrays arrays(tensors);
  const double norm = std::sqrt(backend::sumOfSquares(arrays.list()));
  double coef = 1.0;
  if (std::isfinite(norm)) coef = std::min(1.0, maxNorm / (norm + kClipEpsilon));
  if (coef < 1.0) backend::scaleInPlace(arrays.list(), static_cast<float>(coef));
  Napi::Object result = Napi::Object::New(args.env());
  result.Set("totalNorm", norm);
  result.Set("clipCoef", coef);
  return result;
}

}  // namespace

RLHF_BINDING_EXPORTS(grad_norm) {
  exports.Set("gradNorm", Napi::Function::New(env, GradNorm, "gradNorm"));
  exports.Set("clipGradNorm", Napi::Function::New(env, ClipGradNorm, "clipGradNorm"));
}

}  // namespace rlhf::binding
