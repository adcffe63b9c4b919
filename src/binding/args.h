// Argument checking for op bindings. Every op takes one options object; OpArgs reads it key by
// key and throws a JS TypeError/RangeError naming the op, the key, what was expected and what came:
//   rlhf-native logprobGather: 'targets' must be an int32 tensor of shape [N] (N = 4096 from
//   'hidden'), got float32 [4096]
// Shapes are checked with named dimensions: the first tensor that uses "N" binds it, later ones
// must agree. Unknown keys are errors too (a misspelt option must not be silently ignored).
#pragma once

#include <napi.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tensor_wrap.h"

namespace rlhf::binding {

class OpArgs {
 public:
  OpArgs(const Napi::CallbackInfo& info, const char* op);

  Napi::Env env() const { return env_; }
  const char* op() const { return op_; }

  // A live, contiguous tensor of `dtype` whose dims match `dims`: each entry is a symbol ("N"),
  // an integer literal ("2"), or "*" (any size).
  TensorWrap& tensor(const char* key, DType dtype, const std::vector<const char*>& dims);
  // Same, but the key may be absent/undefined/null (returns null then).
  TensorWrap* optionalTensor(const char* key, DType dtype, const std::vector<const char*>& dims);
  // A tensor of the op's float type, float32 or (on a backend that computes on it) bfloat16: the
  // first float tensor an op reads sets the type, every later one must match (floatDType()).
  TensorWrap& floatTensor(const char* key, const std::vector<const char*>& dims);
  TensorWrap* optionalFloatTensor(const char* key, const std::vector<const char*>& dims);
  // The float type set by the first floatTensor (float32 when none was read).
  DType floatDType() const { return floatDType_ ? *floatDType_ : DType::Float32; }

  // A tensor whose shape the caller checks itself with shape() (e.g. rank 2 or 3).
  TensorWrap* optionalTensorAnyShape(const char* key, DType dtype);
  // Same, of the op's float type (as floatTensor).
  TensorWrap* optionalFloatTensorAnyShape(const char* key);
  // Same, of any of `dtypes` (e.g. an accumulation target that may be the float type or float32).
  TensorWrap* optionalTensorAnyShapeOf(const char* key, const std::vector<DType>& dtypes);
  // Checks a tensor's shape against dims, binding symbols as tensor() does.
  void shape(const char* key, const TensorWrap& t, const std::vector<const char*>& dims);

  // An array of tensors of `dtype` (any shapes).
  std::vector<TensorWrap*> tensorList(const char* key, DType dtype);

  // The size bound to a dimension symbol (throws if no tensor bound it yet).
  int64_t dim(const char* symbol) const;
  // Binds a symbol to a size from something other than a tensor (e.g. a scalar option).
  void bind(const char* symbol, int64_t value, const char* source);

  // A finite number in [min, max] (or `fallback` when the key is absent).
  double number(const char* key, std::optional<double> fallback, double min, double max);
  // An integer in [min, max].
  int64_t integer(const char* key, std::optional<int64_t> fallback, int64_t min, int64_t max);
  bool boolean(const char* key, std::optional<bool> fallback);
  // One string of `allowed`; returns its index.
  int choice(const char* key, const std::vector<std::string>& allowed, std::optional<int> fallback);
  // An array of strings, each one of `allowed`; returns their indices.
  std::vector<int> choiceList(const char* key, const std::vector<std::string>& allowed);
  // An array of finite numbers.
  std::vector<double> numberList(const char* key, std::optional<std::vector<double>> fallback);

  // Throws if two tensors share storage where the kernel writes one and reads the other.
  void distinct(const TensorWrap& a, const char* keyA, const TensorWrap& b, const char* keyB) const;

  // Rejects keys that no accessor asked for. Call after reading every option.
  void finish();

  [[noreturn]] void fail(const std::string& message) const;
  [[noreturn]] void failRange(const std::string& message) const;

 private:
  Napi::Value get(const char* key);
  // Sets or checks the op's float type against the tensor under `key`, if it is a float tensor.
  void noteFloatDType(const char* key);
  std::string shapeSpec(const std::vector<const char*>& dims) const;

  Napi::Env env_;
  const char* op_;
  Napi::Object options_;
  std::set<std::string> used_;
  std::map<std::string, std::pair<int64_t, std::string>> dims_;  // symbol -> (size, who bound it)
  std::optional<DType> floatDType_;
  std::string floatDTypeSource_;
};

// A number as JavaScript prints it (NaN, Infinity, -Infinity; 6 significant digits otherwise).
std::string formatNumber(double v);

// Wraps a native output tensor for returning to JS.
struct NewTensor {
  Napi::Object js;
  TensorWrap* t;
};
NewTensor newTensor(Napi::Env env, DType dtype, const std::vector<int64_t>& shape);

}  // namespace rlhf::binding
