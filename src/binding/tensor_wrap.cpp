#include "tensor_wrap.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <sstream>

#include "../memory.h"
#include "backend.h"

namespace rlhf::binding {
namespace {

// Tags every tensor object so that FromValue never unwraps a foreign object as a tensor. The tag
// differs per backend: a CPU tensor (host memory) handed to the CUDA addon, or the reverse, is
// "not a tensor" rather than a pointer into the wrong memory.
constexpr napi_type_tag kTensorTag = {0x9b2c4e1d7a3f5086ULL, backend::kHostMemory ? 0x1f0e2d3c4b5a6978ULL
                                                                                  : 0x1f0e2d3c4b5a6979ULL};
// Passed to the constructor by Create(); JS code cannot construct tensors directly.
int kConstructToken = 0;

struct ClassData {
  Napi::FunctionReference constructor;
};

constexpr int64_t kMaxElements = int64_t{1} << 40;

std::vector<int64_t> contiguousStrides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shapeString(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

// Calls fn(logicalIndex, elementOffset) for every element in row-major logical order.
template <typename Fn>
void forEachElement(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides, Fn fn) {
  const int64_t n = product(shape);
  if (n == 0) return;
  std::vector<int64_t> index(shape.size(), 0);
  int64_t offset = 0;
  for (int64_t i = 0; i < n; ++i) {
    fn(i, offset);
    for (size_t d = shape.size(); d-- > 0;) {
      if (++index[d] < shape[d]) {
        offset += strides[d];
        break;
      }
      offset -= strides[d] * (shape[d] - 1);
      index[d] = 0;
    }
  }
}

int64_t normalizeDim(Napi::Env env, Napi::Value v, size_t rank, const char* what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string(what) + " must be an integer dimension");
  const double d = v.As<Napi::Number>().DoubleValue();
  const double r = static_cast<double>(rank);
  if (d != std::floor(d) || d < -r || d >= r) {
    std::ostringstream msg;
    msg << what << " " << d << " is out of range for a tensor of rank " << rank;
    throw Napi::RangeError::New(env, msg.str());
  }
  return d < 0 ? static_cast<int64_t>(d + r) : static_cast<int64_t>(d);
}

// Reads element `i` of a JS source (typed array or number array) as a double.
// `expected` is the element count required, or -1 for any length.
class NumberSource {
 public:
  NumberSource(Napi::Env env, Napi::Value value, DType dtype, int64_t expected, const char* what)
      : env_(env) {
    if (value.IsTypedArray()) {
      typed_ = value.As<Napi::TypedArray>();
      type_ = typed_.TypedArrayType();
      const bool ok = type_ == napi_float32_array || type_ == napi_float64_array ||
                      type_ == napi_int32_array ||
                      (type_ == napi_uint16_array && dtype == DType::BFloat16);
      if (!ok) fail(what, "a Float32Array, Float64Array, Int32Array (or Uint16Array of bfloat16 bits)");
      length_ = static_cast<int64_t>(typed_.ElementLength());
      base_ = static_cast<const char*>(typed_.ArrayBuffer().Data()) + typed_.ByteOffset();
    } else if (value.IsArray()) {
      array_ = value.As<Napi::Array>();
      isArray_ = true;
      length_ = static_cast<int64_t>(array_.Length());
    } else {
      fail(what, "a typed array or an array of numbers");
    }
    if (expected >= 0 && length_ != expected) {
      std::ostringstream msg;
      msg << what << " has " << length_ << " elements but the shape needs " << expected;
      throw Napi::RangeError::New(env, msg.str());
    }
  }

  int64_t length() const { return length_; }
  bool rawBf16Bits() const { return !isArray_ && type_ == napi_uint16_array; }
  // Whether the source's bytes are already `dtype`'s storage (Float32Array for float32, Int32Array
  // for int32, Uint16Array bits for bfloat16): then they copy with one memcpy.
  bool sameRepresentation(DType dtype) const {
    if (isArray_) return false;
    switch (dtype) {
      case DType::Float32: return type_ == napi_float32_array;
      case DType::BFloat16: return type_ == napi_uint16_array;
      case DType::Int32: return type_ == napi_int32_array;
    }
    return false;
  }
  const char* bytes() const { return base_; }
  uint16_t bits(int64_t i) const { return reinterpret_cast<const uint16_t*>(base_)[i]; }

  double at(int64_t i) const {
    if (isArray_) {
      Napi::Value v = array_.Get(static_cast<uint32_t>(i));
      if (!v.IsNumber()) {
        std::ostringstream msg;
        msg << "element " << i << " of the data is not a number";
        throw Napi::TypeError::New(env_, msg.str());
      }
      return v.As<Napi::Number>().DoubleValue();
    }
    switch (type_) {
      case napi_float32_array: return reinterpret_cast<const float*>(base_)[i];
      case napi_float64_array: return reinterpret_cast<const double*>(base_)[i];
      case napi_int32_array: return reinterpret_cast<const int32_t*>(base_)[i];
      default: return 0;
    }
  }

 private:
  [[noreturn]] void fail(const char* what, const char* expected) {
    throw Napi::TypeError::New(env_, std::string(what) + " must be " + expected);
  }
  Napi::Env env_;
  Napi::TypedArray typed_;
  Napi::Array array_;
  napi_typedarray_type type_ = napi_float32_array;
  bool isArray_ = false;
  int64_t length_ = 0;
  const char* base_ = nullptr;
};

int32_t toInt32(Napi::Env env, double v, int64_t index) {
  if (!(v == std::floor(v)) || v < -2147483648.0 || v > 2147483647.0) {
    std::ostringstream msg;
    msg << "element " << index << " (" << v << ") is not an int32 value";
    throw Napi::RangeError::New(env, msg.str());
  }
  return static_cast<int32_t>(v);
}

// Writes source elements 0 .. count-1 to contiguous `dtype` storage at host pointer `out`.
void writeContiguous(Napi::Env env, const NumberSource& source, DType dtype, char* out, int64_t count) {
  if (source.sameRepresentation(dtype)) {
    std::memcpy(out, source.bytes(), static_cast<size_t>(count) * dtypeSize(dtype));
    return;
  }
  switch (dtype) {
    case DType::Float32: {
      float* p = reinterpret_cast<float*>(out);
      for (int64_t i = 0; i < count; ++i) p[i] = static_cast<float>(source.at(i));
      break;
    }
    case DType::BFloat16: {
      uint16_t* p = reinterpret_cast<uint16_t*>(out);
      for (int64_t i = 0; i < count; ++i) p[i] = floatToBf16(static_cast<float>(source.at(i)));
      break;
    }
    case DType::Int32: {
      int32_t* p = reinterpret_cast<int32_t*>(out);
      for (int64_t i = 0; i < count; ++i) p[i] = toInt32(env, source.at(i), i);
      break;
    }
  }
}

// Writes `source` into the elements of t (logical order) through `base`, a host pointer standing
// for t's element offset 0 (see HostSpan).
void writeFrom(Napi::Env env, const NumberSource& source, const TensorWrap& t, char* base) {
  if (t.contiguous()) {
    writeContiguous(env, source, t.dtype(), base, t.numel());
    return;
  }
  switch (t.dtype()) {
    case DType::Float32: {
      float* p = reinterpret_cast<float*>(base);
      forEachElement(t.shape(), t.strides(), [&](int64_t i, int64_t off) {
        p[off] = static_cast<float>(source.at(i));
      });
      break;
    }
    case DType::BFloat16: {
      uint16_t* p = reinterpret_cast<uint16_t*>(base);
      const bool raw = source.rawBf16Bits();
      forEachElement(t.shape(), t.strides(), [&](int64_t i, int64_t off) {
        p[off] = raw ? source.bits(i) : floatToBf16(static_cast<float>(source.at(i)));
      });
      break;
    }
    case DType::Int32: {
      int32_t* p = reinterpret_cast<int32_t*>(base);
      forEachElement(t.shape(), t.strides(), [&](int64_t i, int64_t off) {
        p[off] = toInt32(env, source.at(i), i);
      });
      break;
    }
  }
}

// The float element at offset `off` from a host base pointer (bf16 widened); int32 is read apart.
float readFloat(DType dtype, const char* base, int64_t off) {
  return dtype == DType::BFloat16 ? bf16ToFloat(reinterpret_cast<const uint16_t*>(base)[off])
                                  : reinterpret_cast<const float*>(base)[off];
}

}  // namespace

// ---------------------------------------------------------------------------------------------
Storage::Storage(napi_env env, size_t bytes) : env_(env), data_(backend::deviceAlloc(bytes)), bytes_(bytes) {
  backend::zeroDevice(data_, bytes_);
  int64_t ignored;
  napi_adjust_external_memory(env_, static_cast<int64_t>(bytes_), &ignored);
}

Storage::~Storage() {
  backend::deviceFree(data_, bytes_);
  int64_t ignored;
  napi_adjust_external_memory(env_, -static_cast<int64_t>(bytes_), &ignored);
}

// ---------------------------------------------------------------------------------------------
HostSpan::HostSpan(const TensorWrap& t, bool load) : device_(t.data<char>()), bytes_(0) {
  // Strides are never negative (views only permute dimensions), so the span runs from element 0
  // to the element at Σ (size − 1)·stride.
  if (t.numel() > 0) {
    int64_t last = 0;
    for (size_t d = 0; d < t.shape().size(); ++d) last += (t.shape()[d] - 1) * t.strides()[d];
    bytes_ = static_cast<size_t>(last + 1) * dtypeSize(t.dtype());
  }
  if (backend::kHostMemory) {
    base_ = device_;
    return;
  }
  staging_ = ScratchBuffer<char>(bytes_);
  base_ = staging_.data();
  if (load) backend::copyToHost(base_, device_, bytes_);
}

void HostSpan::store() {
  if (!backend::kHostMemory) backend::copyToDevice(device_, base_, bytes_);
}

// ---------------------------------------------------------------------------------------------
DType ParseDType(Napi::Env env, Napi::Value value, const char* what) {
  if (value.IsString()) {
    const std::string s = value.As<Napi::String>().Utf8Value();
    if (s == "float32") return DType::Float32;
    if (s == "bfloat16") return DType::BFloat16;
    if (s == "int32") return DType::Int32;
  }
  throw Napi::TypeError::New(env, std::string(what) + " must be \"float32\", \"bfloat16\" or \"int32\"");
}

std::vector<int64_t> ParseShape(Napi::Env env, Napi::Value value, DType dtype, const char* what) {
  if (!value.IsArray()) throw Napi::TypeError::New(env, std::string(what) + " must be an array of dimensions");
  Napi::Array arr = value.As<Napi::Array>();
  if (arr.Length() > 8) throw Napi::RangeError::New(env, std::string(what) + " has more than 8 dimensions");
  std::vector<int64_t> shape;
  double elements = 1;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value v = arr.Get(i);
    const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0) || d != std::floor(d) || d > static_cast<double>(kMaxElements)) {
      std::ostringstream msg;
      msg << what << "[" << i << "] must be a non-negative integer, got " << v.ToString().Utf8Value();
      throw Napi::RangeError::New(env, msg.str());
    }
    shape.push_back(static_cast<int64_t>(d));
    elements *= d;
  }
  if (elements > static_cast<double>(kMaxElements)) {
    std::ostringstream msg;
    msg << what << " " << shapeString(shape) << " has " << elements << " elements ("
        << elements * static_cast<double>(dtypeSize(dtype)) << " bytes), more than any host can hold";
    throw Napi::RangeError::New(env, msg.str());
  }
  return shape;
}

// ---------------------------------------------------------------------------------------------
void TensorWrap::Init(Napi::Env env, Napi::Object exports) {
  // Methods returning new handles stay replaceable so the TypeScript loader can register their
  // results with the open scope (lib/native/addon.ts).
  constexpr auto kWrappable = static_cast<napi_property_attributes>(napi_writable | napi_configurable);
  Napi::Function ctor = DefineClass(
      env, "Tensor",
      {
          InstanceAccessor<&TensorWrap::GetDType>("dtype"),
          InstanceAccessor<&TensorWrap::GetShape>("shape"),
          InstanceAccessor<&TensorWrap::GetStrides>("strides"),
          InstanceAccessor<&TensorWrap::GetNumel>("numel"),
          InstanceAccessor<&TensorWrap::GetByteLength>("byteLength"),
          InstanceAccessor<&TensorWrap::GetIsContiguous>("isContiguous"),
          InstanceAccessor<&TensorWrap::GetDisposed>("disposed"),
          InstanceMethod<&TensorWrap::Dispose>("dispose"),
          InstanceMethod<&TensorWrap::ToArray>("toArray"),
          InstanceMethod<&TensorWrap::To>("to", kWrappable),
          InstanceMethod<&TensorWrap::Reshape>("reshape", kWrappable),
          InstanceMethod<&TensorWrap::Transpose>("transpose", kWrappable),
          InstanceMethod<&TensorWrap::Contiguous>("contiguous", kWrappable),
          InstanceMethod<&TensorWrap::Clone>("clone", kWrappable),
          InstanceMethod<&TensorWrap::CopyFrom>("copyFrom"),
          InstanceMethod<&TensorWrap::Fill>("fill"),
      });
  auto* data = new ClassData();
  data->constructor = Napi::Persistent(ctor);
  env.SetInstanceData<ClassData>(data);
  exports.Set("Tensor", ctor);
}

TensorWrap::TensorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorWrap>(info) {
  const bool internal = info.Length() == 1 && info[0].IsExternal() &&
                        info[0].As<Napi::External<int>>().Data() == &kConstructToken;
  if (!internal) {
    throw Napi::TypeError::New(info.Env(), "Tensors are created with tensor(), zeros() or an op, not new Tensor()");
  }
  napi_type_tag_object(info.Env(), info.This(), &kTensorTag);
}

TensorWrap::~TensorWrap() { release(); }

TensorWrap* TensorWrap::Create(Napi::Env env, DType dtype, const std::vector<int64_t>& shape,
                               Napi::Object* jsObject) {
  const int64_t n = product(shape);
  if (n > kMaxElements) throw Napi::RangeError::New(env, "tensor " + shapeString(shape) + " is too large");
  std::shared_ptr<Storage> storage;
  const size_t bytes = static_cast<size_t>(n) * dtypeSize(dtype);
  try {
    storage = std::make_shared<Storage>(env, bytes);
  } catch (const std::bad_alloc&) {
    std::ostringstream msg;
    msg << "out of memory: cannot allocate " << bytes << " bytes for a " << dtypeName(dtype)
        << " tensor of shape " << shapeString(shape);
    throw Napi::RangeError::New(env, msg.str());
  }
  ClassData* data = env.GetInstanceData<ClassData>();
  Napi::Object obj = data->constructor.New({Napi::External<int>::New(env, &kConstructToken)});
  TensorWrap* t = Unwrap(obj);
  t->assign(std::move(storage), dtype, shape, contiguousStrides(shape), 0);
  if (jsObject) *jsObject = obj;
  return t;
}

TensorWrap* TensorWrap::FromValue(Napi::Value value) {
  if (!value.IsObject()) return nullptr;
  bool tagged = false;
  if (napi_check_object_type_tag(value.Env(), value, &kTensorTag, &tagged) != napi_ok || !tagged) return nullptr;
  return Unwrap(value.As<Napi::Object>());
}

void TensorWrap::assign(std::shared_ptr<Storage> storage, DType dtype, std::vector<int64_t> shape,
                        std::vector<int64_t> strides, int64_t offset) {
  storage_ = std::move(storage);
  dtype_ = dtype;
  shape_ = std::move(shape);
  strides_ = std::move(strides);
  offset_ = offset;
}

void TensorWrap::release() { storage_.reset(); }

void TensorWrap::requireLive(const char* what) const {
  if (!storage_) throw Napi::Error::New(Env(), std::string("cannot call ") + what + " on a disposed tensor");
}

int64_t TensorWrap::numel() const { return product(shape_); }

bool TensorWrap::contiguous() const { return strides_ == contiguousStrides(shape_); }

std::string TensorWrap::describe() const {
  return std::string(dtypeName(dtype_)) + " " + shapeString(shape_) + (contiguous() ? "" : " (non-contiguous)");
}

Napi::Object TensorWrap::newView(Napi::Env env, std::vector<int64_t> shape, std::vector<int64_t> strides) const {
  ClassData* data = env.GetInstanceData<ClassData>();
  Napi::Object obj = data->constructor.New({Napi::External<int>::New(env, &kConstructToken)});
  Unwrap(obj)->assign(storage_, dtype_, std::move(shape), std::move(strides), offset_);
  return obj;
}

// ---------------------------------------------------------------------------------------------
Napi::Value TensorWrap::GetDType(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), dtypeName(dtype_));
}

Napi::Value TensorWrap::GetShape(const Napi::CallbackInfo& info) {
  Napi::Array arr = Napi::Array::New(info.Env(), shape_.size());
  for (size_t i = 0; i < shape_.size(); ++i) arr.Set(i, Napi::Number::New(info.Env(), static_cast<double>(shape_[i])));
  return arr;
}

Napi::Value TensorWrap::GetStrides(const Napi::CallbackInfo& info) {
  Napi::Array arr = Napi::Array::New(info.Env(), strides_.size());
  for (size_t i = 0; i < strides_.size(); ++i) arr.Set(i, Napi::Number::New(info.Env(), static_cast<double>(strides_[i])));
  return arr;
}

Napi::Value TensorWrap::GetNumel(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(numel()));
}

Napi::Value TensorWrap::GetByteLength(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(numel() * static_cast<int64_t>(dtypeSize(dtype_))));
}

Napi::Value TensorWrap::GetIsContiguous(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), contiguous());
}

Napi::Value TensorWrap::GetDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), disposed());
}

Napi::Value TensorWrap::Dispose(const Napi::CallbackInfo& info) {
  release();  // disposing twice is harmless
  return info.Env().Undefined();
}

Napi::Value TensorWrap::ToArray(const Napi::CallbackInfo& info) {
  requireLive("toArray()");
  Napi::Env env = info.Env();
  const int64_t n = numel();
  const HostSpan host(*this, true);
  if (dtype_ == DType::Int32) {
    Napi::Int32Array out = Napi::Int32Array::New(env, static_cast<size_t>(n));
    const int32_t* p = host.as<int32_t>();
    int32_t* dst = out.Data();
    if (contiguous()) std::memcpy(dst, p, static_cast<size_t>(n) * sizeof(int32_t));
    else forEachElement(shape_, strides_, [&](int64_t i, int64_t off) { dst[i] = p[off]; });
    return out;
  }
  Napi::Float32Array out = Napi::Float32Array::New(env, static_cast<size_t>(n));
  float* dst = out.Data();
  if (contiguous() && dtype_ == DType::Float32) {
    std::memcpy(dst, host.base(), static_cast<size_t>(n) * sizeof(float));
  } else if (contiguous()) {
    const uint16_t* p = host.as<uint16_t>();
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16ToFloat(p[i]);
  } else {
    forEachElement(shape_, strides_, [&](int64_t i, int64_t off) { dst[i] = readFloat(dtype_, host.base(), off); });
  }
  return out;
}

Napi::Value TensorWrap::To(const Napi::CallbackInfo& info) {
  requireLive("to()");
  Napi::Env env = info.Env();
  const DType target = ParseDType(env, info[0], "to(dtype): dtype");
  if (dtype_ != target && target == DType::Int32) {
    throw Napi::TypeError::New(env, std::string("to(\"int32\"): cannot convert a ") + dtypeName(dtype_) +
                                        " tensor to int32 (token ids must be created as int32)");
  }
  if (!contiguous()) {
    // Gather the view first; converting contiguous memory is one pass on every backend.
    Napi::Object copy = Clone(info).As<Napi::Object>();
    Napi::Value result = Unwrap(copy)->convertTo(env, target);
    Unwrap(copy)->release();
    return result;
  }
  return convertTo(env, target);
}

Napi::Value TensorWrap::convertTo(Napi::Env env, DType target) const {
  Napi::Object obj;
  TensorWrap* out = Create(env, target, shape_, &obj);
  backend::convert(data<char>(), dtype_, out->data<char>(), target, numel());
  return obj;
}

Napi::Value TensorWrap::Reshape(const Napi::CallbackInfo& info) {
  requireLive("reshape()");
  Napi::Env env = info.Env();
  if (!contiguous()) throw Napi::Error::New(env, "reshape() needs a contiguous tensor; call contiguous() first");
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "reshape(shape): shape must be an array");
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<int64_t> shape;
  int inferred = -1;
  int64_t known = 1;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value v = arr.Get(i);
    const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -2;
    if (d == -1 && inferred < 0) {
      inferred = static_cast<int>(i);
      shape.push_back(1);
      continue;
    }
    if (!(d >= 0) || d != std::floor(d) || d > static_cast<double>(kMaxElements)) {
      throw Napi::RangeError::New(env, "reshape(shape): dimensions must be non-negative integers (one may be -1)");
    }
    shape.push_back(static_cast<int64_t>(d));
    known *= static_cast<int64_t>(d);
  }
  if (inferred >= 0) {
    if (known == 0 || numel() % known != 0) {
      throw Napi::RangeError::New(env, "reshape(shape): cannot infer -1 for " + describe());
    }
    shape[inferred] = numel() / known;
  }
  if (product(shape) != numel()) {
    throw Napi::RangeError::New(env, "reshape(" + shapeString(shape) + ") does not match the " +
                                         std::to_string(numel()) + " elements of " + describe());
  }
  return newView(env, shape, contiguousStrides(shape));
}

Napi::Value TensorWrap::Transpose(const Napi::CallbackInfo& info) {
  requireLive("transpose()");
  Napi::Env env = info.Env();
  const int64_t d0 = normalizeDim(env, info[0], shape_.size(), "transpose(dim0, dim1): dim0");
  const int64_t d1 = normalizeDim(env, info[1], shape_.size(), "transpose(dim0, dim1): dim1");
  std::vector<int64_t> shape = shape_, strides = strides_;
  std::swap(shape[d0], shape[d1]);
  std::swap(strides[d0], strides[d1]);
  return newView(env, shape, strides);
}

Napi::Value TensorWrap::Contiguous(const Napi::CallbackInfo& info) {
  requireLive("contiguous()");
  if (contiguous()) return newView(info.Env(), shape_, strides_);
  return Clone(info);
}

Napi::Value TensorWrap::Clone(const Napi::CallbackInfo& info) {
  requireLive("clone()");
  Napi::Object obj;
  TensorWrap* out = Create(info.Env(), dtype_, shape_, &obj);
  const size_t size = dtypeSize(dtype_);
  if (contiguous()) {
    backend::copyOnDevice(out->data<char>(), data<char>(), static_cast<size_t>(numel()) * size);
    return obj;
  }
  const HostSpan src(*this, true);
  HostSpan dst(*out, false);
  forEachElement(shape_, strides_, [&](int64_t i, int64_t off) {
    std::memcpy(dst.base() + i * size, src.base() + off * static_cast<int64_t>(size), size);
  });
  dst.store();
  return obj;
}

Napi::Value TensorWrap::CopyFrom(const Napi::CallbackInfo& info) {
  requireLive("copyFrom()");
  Napi::Env env = info.Env();
  if (info.Length() > 1 && !info[1].IsUndefined()) return copyRange(info);
  if (TensorWrap* src = FromValue(info[0])) {
    if (src->disposed()) throw Napi::Error::New(env, "copyFrom(source): the source tensor was disposed");
    if (src->dtype_ != dtype_ || src->shape_ != shape_) {
      throw Napi::TypeError::New(env, "copyFrom(source): source is " + src->describe() + " but this tensor is " + describe());
    }
    const size_t size = dtypeSize(dtype_);
    if (contiguous() && src->contiguous()) {
      backend::copyOnDevice(data<char>(), src->data<char>(), static_cast<size_t>(numel()) * size);
      return info.This();
    }
    // Gather the source in logical order first, so overlapping views copy correctly.
    ScratchBuffer<char> tmp(static_cast<size_t>(numel()) * size);
    {
      const HostSpan s(*src, true);
      forEachElement(shape_, src->strides_, [&](int64_t i, int64_t off) {
        std::memcpy(tmp.data() + i * size, s.base() + off * static_cast<int64_t>(size), size);
      });
    }
    HostSpan d(*this, !contiguous());  // elements between a view's elements must survive the store
    forEachElement(shape_, strides_, [&](int64_t i, int64_t off) {
      std::memcpy(d.base() + off * static_cast<int64_t>(size), tmp.data() + i * size, size);
    });
    d.store();
    return info.This();
  }
  NumberSource source(env, info[0], dtype_, numel(), "copyFrom(source): source");
  HostSpan d(*this, !contiguous());
  writeFrom(env, source, *this, d.base());
  d.store();
  return info.This();
}

Napi::Value TensorWrap::copyRange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!contiguous()) throw Napi::Error::New(env, "copyFrom(source, offset) needs a contiguous tensor");
  if (FromValue(info[0])) {
    throw Napi::TypeError::New(env, "copyFrom(source, offset): source must be a typed array or an array of numbers");
  }
  const int64_t n = numel();
  const double offset = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
  if (!(offset >= 0) || offset != std::floor(offset) || offset > static_cast<double>(n)) {
    std::ostringstream msg;
    msg << "copyFrom(source, offset): offset must be an integer in [0, " << n << "], got "
        << info[1].ToString().Utf8Value();
    throw Napi::RangeError::New(env, msg.str());
  }
  const int64_t first = static_cast<int64_t>(offset);
  const NumberSource source(env, info[0], dtype_, -1, "copyFrom(source, offset): source");
  const int64_t count = source.length();
  if (count > n - first) {
    std::ostringstream msg;
    msg << "copyFrom(source, offset): " << count << " elements from offset " << first << " overrun the "
        << n << " elements of " << describe();
    throw Napi::RangeError::New(env, msg.str());
  }
  const size_t bytes = static_cast<size_t>(count) * dtypeSize(dtype_);
  char* device = data<char>() + first * static_cast<int64_t>(dtypeSize(dtype_));
  if (backend::kHostMemory) {
    writeContiguous(env, source, dtype_, device, count);
  } else {
    // Stage only the range written, not the whole tensor.
    ScratchBuffer<char> staging(bytes);
    writeContiguous(env, source, dtype_, staging.data(), count);
    backend::copyToDevice(device, staging.data(), bytes);
  }
  return info.This();
}

Napi::Value TensorWrap::Fill(const Napi::CallbackInfo& info) {
  requireLive("fill()");
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "fill(value): value must be a number");
  const double v = info[0].As<Napi::Number>().DoubleValue();
  if (v == 0.0 && !std::signbit(v) && contiguous()) {  // zeroing gradients: no host pass
    backend::zeroDevice(data<char>(), static_cast<size_t>(numel()) * dtypeSize(dtype_));
    return info.This();
  }
  HostSpan d(*this, !contiguous());
  switch (dtype_) {
    case DType::Float32: {
      float* p = d.as<float>();
      forEachElement(shape_, strides_, [&](int64_t, int64_t off) { p[off] = static_cast<float>(v); });
      break;
    }
    case DType::BFloat16: {
      uint16_t* p = d.as<uint16_t>();
      const uint16_t bits = floatToBf16(static_cast<float>(v));
      forEachElement(shape_, strides_, [&](int64_t, int64_t off) { p[off] = bits; });
      break;
    }
    case DType::Int32: {
      int32_t* p = d.as<int32_t>();
      const int32_t iv = toInt32(env, v, 0);
      forEachElement(shape_, strides_, [&](int64_t, int64_t off) { p[off] = iv; });
      break;
    }
  }
  d.store();
  return info.This();
}

// ---------------------------------------------------------------------------------------------
void InitTensorFactories(Napi::Env env, Napi::Object exports) {
  // tensor(dtype, shape, data?) -> Tensor; data in row-major order, one value per element.
  exports.Set("tensor", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Env env = info.Env();
    const DType dtype = ParseDType(env, info[0], "tensor(dtype, shape, data): dtype");
    const std::vector<int64_t> shape = ParseShape(env, info[1], dtype, "tensor(dtype, shape, data): shape");
    Napi::Object obj;
    TensorWrap* t = TensorWrap::Create(env, dtype, shape, &obj);
    if (info.Length() > 2 && !info[2].IsUndefined()) {
      NumberSource source(env, info[2], dtype, t->numel(), "tensor(dtype, shape, data): data");
      HostSpan host(*t, false);
      writeFrom(env, source, *t, host.base());
      host.store();
    }
    return obj;
  }, "tensor"));

  exports.Set("zeros", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Env env = info.Env();
    const DType dtype = ParseDType(env, info[0], "zeros(dtype, shape): dtype");
    const std::vector<int64_t> shape = ParseShape(env, info[1], dtype, "zeros(dtype, shape): shape");
    Napi::Object obj;
    TensorWrap::Create(env, dtype, shape, &obj);
    return obj;
  }, "zeros"));
}

}  // namespace rlhf::binding
