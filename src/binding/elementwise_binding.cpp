// addInto({ dst, src }) -> dst, after dst += src elementwise.
// dst, src: float32 (or bfloat16 on the CUDA backend) of the same shape (rank 1 to 6) and dtype,
// with separate memory; dst is updated in place and returned.
#include "../kernels.h"
#include "args.h"
#include "backend.h"
#include "batch_dims.h"
#include "dispatch.h"
#include "registry.h"

namespace rlhf::binding {
namespace {

Napi::Value AddInto(const Napi::CallbackInfo& info) {
  OpArgs args(info, "addInto");
  TensorWrap& dst = batchedFloatTensor(args, "dst", {}, 1);
  TensorWrap& src = args.floatTensor("src", batchShape(args, "src", dst.shape().size(), {}));
  args.finish();
  args.distinct(dst, "dst", src, "src");
  withFloatType(args.floatDType(), [&](auto zero) {
    using T = decltype(zero);
    backend::addInto(AddIntoArgsT<T>{dst.data<T>(), src.data<T>(), dst.numel()});
  });
  return info[0].As<Napi::Object>().Get("dst");
}

}  // namespace

RLHF_BINDING_EXPORTS(elementwise) {
  exports.Set("addInto", Napi::Function::New(env, AddInto, "addInto"));
}

}  // namespace rlhf::binding
