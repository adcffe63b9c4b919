#include "args.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "backend.h"
#include "element_checks.h"

namespace rlhf::binding {
namespace {

std::string describeValue(Napi::Value v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? "true" : "false";
  if (v.IsNumber()) return formatNumber(v.As<Napi::Number>().DoubleValue());
  if (v.IsString()) return "\"" + v.As<Napi::String>().Utf8Value() + "\"";
  if (TensorWrap* t = TensorWrap::FromValue(v)) return t->disposed() ? "a disposed tensor" : t->describe();
  if (v.IsArray()) return "an array";
  if (v.IsTypedArray()) return "a typed array";
  if (v.IsFunction()) return "a function";
  return "an object";
}

bool isLiteral(const char* dim) { return std::isdigit(static_cast<unsigned char>(dim[0])) != 0; }

}  // namespace

std::string formatNumber(double v) {
  if (std::isnan(v)) return "NaN";  // JavaScript's spelling, not printf's
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  std::ostringstream out;
  out << v;
  return out.str();
}

std::string formatIndex(const std::vector<int64_t>& shape, int64_t flat) {
  std::vector<int64_t> index(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    index[d] = shape[d] ? flat % shape[d] : 0;
    flat = shape[d] ? flat / shape[d] : 0;
  }
  std::string out = "[";
  for (size_t d = 0; d < index.size(); ++d) out += (d ? ", " : "") + std::to_string(index[d]);
  return out + "]";
}

OpArgs::OpArgs(const Napi::CallbackInfo& info, const char* op) : env_(info.Env()), op_(op) {
  if (info.Length() < 1 || !info[0].IsObject() || info[0].IsArray() || TensorWrap::FromValue(info[0])) {
    fail(std::string("expects one options object, got ") + (info.Length() ? describeValue(info[0]) : "nothing"));
  }
  options_ = info[0].As<Napi::Object>();
}

void OpArgs::fail(const std::string& message) const {
  throw Napi::TypeError::New(env_, std::string("rlhf-native ") + op_ + ": " + message);
}

void OpArgs::failRange(const std::string& message) const {
  throw Napi::RangeError::New(env_, std::string("rlhf-native ") + op_ + ": " + message);
}

Napi::Value OpArgs::get(const char* key) {
  used_.insert(key);
  return options_.Get(key);
}

std::string OpArgs::shapeSpec(const std::vector<const char*>& dims) const {
  std::ostringstream out;
  out << "[";
  bool first = true;
  for (const char* d : dims) {
    out << (first ? "" : ", ") << d;
    first = false;
  }
  out << "]";
  std::string bound;
  for (const char* d : dims) {
    auto it = dims_.find(d);
    if (!isLiteral(d) && it != dims_.end()) {
      bound += (bound.empty() ? "" : ", ") + std::string(d) + " = " + std::to_string(it->second.first) +
               " from " + it->second.second;
    }
  }
  return bound.empty() ? out.str() : out.str() + " (" + bound + ")";
}

void OpArgs::shape(const char* key, const TensorWrap& t, const std::vector<const char*>& dims) {
  const auto& sizes = t.shape();
  auto mismatch = [&] {
    failRange("'" + std::string(key) + "' must have shape " + shapeSpec(dims) + ", got " + t.describe());
  };
  if (sizes.size() != dims.size()) mismatch();
  size_t i = 0;
  for (const char* d : dims) {
    const int64_t size = sizes[i++];
    if (std::string(d) == "*") continue;
    if (isLiteral(d)) {
      if (size != std::atoll(d)) mismatch();
      continue;
    }
    auto it = dims_.find(d);
    if (it == dims_.end()) {
      dims_[d] = {size, "'" + std::string(key) + "'"};
    } else if (it->second.first != size) {
      mismatch();
    }
  }
}

TensorWrap& OpArgs::tensor(const char* key, DType dtype, const std::vector<const char*>& dims) {
  TensorWrap* t = optionalTensor(key, dtype, dims);
  if (!t) fail("'" + std::string(key) + "' is required: a " + dtypeName(dtype) + " tensor of shape " + shapeSpec(dims));
  return *t;
}

TensorWrap* OpArgs::optionalTensor(const char* key, DType dtype, const std::vector<const char*>& dims) {
  TensorWrap* t = optionalTensorAnyShape(key, dtype);
  if (t) shape(key, *t, dims);
  return t;
}

TensorWrap& OpArgs::floatTensor(const char* key, const std::vector<const char*>& dims) {
  TensorWrap* t = optionalFloatTensor(key, dims);
  if (!t) {
    fail("'" + std::string(key) + "' is required: a " + dtypeName(floatDType()) + " tensor of shape " + shapeSpec(dims));
  }
  return *t;
}

void OpArgs::noteFloatDType(const char* key) {
  Napi::Value v = options_.Get(key);
  TensorWrap* peek = TensorWrap::FromValue(v);
  if (!peek || peek->disposed() || peek->dtype() == DType::Int32) return;
  if (!floatDType_) {
    if (peek->dtype() == DType::BFloat16 && !backend::kComputesBf16) {
      fail("'" + std::string(key) + "' is bfloat16, but the " + kBackendName +
           " backend computes in float32: convert it with .to(\"float32\")");
    }
    floatDType_ = peek->dtype();
    floatDTypeSource_ = key;
  } else if (peek->dtype() != *floatDType_) {
    fail("'" + std::string(key) + "' is " + dtypeName(peek->dtype()) + " but '" + floatDTypeSource_ + "' is " +
         dtypeName(*floatDType_) + ": the float tensors of an op share one dtype");
  }
}

TensorWrap* OpArgs::optionalFloatTensor(const char* key, const std::vector<const char*>& dims) {
  noteFloatDType(key);
  return optionalTensor(key, floatDType(), dims);
}

TensorWrap* OpArgs::optionalFloatTensorAnyShape(const char* key) {
  noteFloatDType(key);
  return optionalTensorAnyShape(key, floatDType());
}

TensorWrap* OpArgs::optionalTensorAnyShape(const char* key, DType dtype) {
  return optionalTensorAnyShapeOf(key, {dtype});
}

TensorWrap* OpArgs::optionalTensorAnyShapeOf(const char* key, const std::vector<DType>& dtypes) {
  Napi::Value v = get(key);
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  TensorWrap* t = TensorWrap::FromValue(v);
  if (!t) fail("'" + std::string(key) + "' must be a tensor, got " + describeValue(v));
  if (t->disposed()) fail("'" + std::string(key) + "' was disposed");
  if (std::find(dtypes.begin(), dtypes.end(), t->dtype()) == dtypes.end()) {
    std::string names;
    for (size_t i = 0; i < dtypes.size(); ++i) names += (i ? " or " : "") + std::string(dtypeName(dtypes[i]));
    fail("'" + std::string(key) + "' must be a " + names + " tensor, got " + t->describe());
  }
  if (!t->contiguous()) fail("'" + std::string(key) + "' must be contiguous (call .contiguous()), got " + t->describe());
  return t;
}

std::vector<TensorWrap*> OpArgs::tensorList(const char* key, DType dtype) {
  Napi::Value v = get(key);
  if (!v.IsArray()) fail("'" + std::string(key) + "' must be an array of tensors, got " + describeValue(v));
  Napi::Array arr = v.As<Napi::Array>();
  std::vector<TensorWrap*> out;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    const std::string name = std::string(key) + "[" + std::to_string(i) + "]";
    TensorWrap* t = TensorWrap::FromValue(arr.Get(i));
    if (!t) fail("'" + name + "' must be a tensor, got " + describeValue(arr.Get(i)));
    if (t->disposed()) fail("'" + name + "' was disposed");
    if (t->dtype() != dtype) fail("'" + name + "' must be a " + dtypeName(dtype) + " tensor, got " + t->describe());
    if (!t->contiguous()) fail("'" + name + "' must be contiguous, got " + t->describe());
    out.push_back(t);
  }
  return out;
}

int64_t OpArgs::dim(const char* symbol) const {
  auto it = dims_.find(symbol);
  if (it == dims_.end()) fail(std::string("internal: dimension ") + symbol + " was never bound");
  return it->second.first;
}

void OpArgs::bind(const char* symbol, int64_t value, const char* source) {
  auto it = dims_.find(symbol);
  if (it != dims_.end() && it->second.first != value) {
    failRange(std::string(source) + " says " + symbol + " = " + std::to_string(value) + " but " +
              it->second.second + " says " + std::to_string(it->second.first));
  }
  dims_[symbol] = {value, source};
}

double OpArgs::number(const char* key, std::optional<double> fallback, double min, double max) {
  Napi::Value v = get(key);
  if (v.IsUndefined() && fallback) return *fallback;
  if (!v.IsNumber()) fail("'" + std::string(key) + "' must be a number, got " + describeValue(v));
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) failRange("'" + std::string(key) + "' must be finite, got " + describeValue(v));
  if (d < min || d > max) {
    std::ostringstream msg;
    msg << "'" << key << "' must be in [" << min << ", " << max << "], got " << d;
    failRange(msg.str());
  }
  return d;
}

int64_t OpArgs::integer(const char* key, std::optional<int64_t> fallback, int64_t min, int64_t max) {
  Napi::Value v = get(key);
  if (v.IsUndefined() && fallback) return *fallback;
  if (!v.IsNumber()) fail("'" + std::string(key) + "' must be an integer, got " + describeValue(v));
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d != std::floor(d)) failRange("'" + std::string(key) + "' must be an integer, got " + describeValue(v));
  if (d < static_cast<double>(min) || d > static_cast<double>(max)) {
    std::ostringstream msg;
    msg << "'" << key << "' must be in [" << min << ", " << max << "], got " << d;
    failRange(msg.str());
  }
  return static_cast<int64_t>(d);
}

bool OpArgs::boolean(const char* key, std::optional<bool> fallback) {
  Napi::Value v = get(key);
  if (v.IsUndefined() && fallback) return *fallback;
  if (!v.IsBoolean()) fail("'" + std::string(key) + "' must be a boolean, got " + describeValue(v));
  return v.As<Napi::Boolean>().Value();
}

int OpArgs::choice(const char* key, const std::vector<std::string>& allowed, std::optional<int> fallback) {
  Napi::Value v = get(key);
  if (v.IsUndefined() && fallback) return *fallback;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  if (v.IsString()) {
    const std::string s = v.As<Napi::String>().Utf8Value();
    for (size_t i = 0; i < allowed.size(); ++i) {
      if (allowed[i] == s) return static_cast<int>(i);
    }
  }
  fail("'" + std::string(key) + "' must be one of " + list + "; got " + describeValue(v));
}

std::vector<int> OpArgs::choiceList(const char* key, const std::vector<std::string>& allowed) {
  Napi::Value v = get(key);
  if (!v.IsArray()) fail("'" + std::string(key) + "' must be an array of strings, got " + describeValue(v));
  Napi::Array arr = v.As<Napi::Array>();
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  std::vector<int> out;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value e = arr.Get(i);
    int found = -1;
    if (e.IsString()) {
      const std::string s = e.As<Napi::String>().Utf8Value();
      for (size_t j = 0; j < allowed.size(); ++j) {
        if (allowed[j] == s) found = static_cast<int>(j);
      }
    }
    if (found < 0) fail("'" + std::string(key) + "[" + std::to_string(i) + "]' must be one of " + list + "; got " + describeValue(e));
    out.push_back(found);
  }
  return out;
}

std::vector<double> OpArgs::numberList(const char* key, std::optional<std::vector<double>> fallback) {
  Napi::Value v = get(key);
  if (v.IsUndefined() && fallback) return *fallback;
  if (!v.IsArray()) fail("'" + std::string(key) + "' must be an array of numbers, got " + describeValue(v));
  Napi::Array arr = v.As<Napi::Array>();
  std::vector<double> out;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value e = arr.Get(i);
    if (!e.IsNumber() || !std::isfinite(e.As<Napi::Number>().DoubleValue())) {
      fail("'" + std::string(key) + "[" + std::to_string(i) + "]' must be a finite number, got " + describeValue(e));
    }
    out.push_back(e.As<Napi::Number>().DoubleValue());
  }
  return out;
}

void OpArgs::distinct(const TensorWrap& a, const char* keyA, const TensorWrap& b, const char* keyB) const {
  if (a.sharesStorageWith(b)) {
    fail("'" + std::string(keyA) + "' and '" + keyB + "' must not share memory");
  }
}

void OpArgs::finish() {
  Napi::Array keys = options_.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    const std::string key = keys.Get(i).ToString().Utf8Value();
    if (!used_.count(key)) {
      std::string known;
      for (const auto& k : used_) known += (known.empty() ? "" : ", ") + k;
      fail("unknown option '" + key + "' (known options: " + known + ")");
    }
  }
}

NewTensor newTensor(Napi::Env env, DType dtype, const std::vector<int64_t>& shape) {
  NewTensor out;
  out.t = TensorWrap::Create(env, dtype, shape, &out.js);
  return out;
}

}  // namespace rlhf::binding
