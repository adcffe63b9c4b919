// The JS-visible native tensor: a handle on tracked host storage with a dtype, a shape and strides.
// Several handles may share one storage (views from reshape/transpose); the storage is freed when
// the last handle is disposed or garbage-collected. dispose() releases a handle's reference at
// once; the ObjectWrap finalizer is the safety net for handles nobody disposed.
#pragma once

#include <napi.h>

#include <memory>
#include <vector>

#include "../dtype.h"
#include "../memory.h"

namespace rlhf::binding {

// One tracked, zero-filled allocation shared by every view on it; its size is reported to V8 as
// external memory so that garbage collection feels the pressure of undisposed tensors.
class Storage {
 public:
  Storage(napi_env env, size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  napi_env env_;
  void* data_;
  size_t bytes_;
};

class TensorWrap : public Napi::ObjectWrap<TensorWrap> {
 public:
  // Defines the class on `exports` and remembers its constructor in the env's instance data.
  static void Init(Napi::Env env, Napi::Object exports);

  // A new contiguous, zero-filled tensor. Throws a JS RangeError for impossible shapes.
  static TensorWrap* Create(Napi::Env env, DType dtype, const std::vector<int64_t>& shape,
                            Napi::Object* jsObject);
  // The tensor behind a JS value, or null when the value is not a tensor of this addon.
  static TensorWrap* FromValue(Napi::Value value);

  explicit TensorWrap(const Napi::CallbackInfo& info);
  ~TensorWrap() override;

  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  const std::vector<int64_t>& strides() const { return strides_; }
  int64_t numel() const;
  bool contiguous() const;
  bool disposed() const { return storage_ == nullptr; }
  std::string describe() const;  // e.g. "float32 [4, 3]"

  template <typename T>
  T* data() const {
    return reinterpret_cast<T*>(static_cast<char*>(storage_->data()) +
                                offset_ * static_cast<int64_t>(dtypeSize(dtype_)));
  }
  bool sharesStorageWith(const TensorWrap& other) const {
    return storage_ && storage_ == other.storage_;
  }

 private:
  // Shape, strides and storage of a handle; a view copies the storage pointer.
  void assign(std::shared_ptr<Storage> storage, DType dtype, std::vector<int64_t> shape,
              std::vector<int64_t> strides, int64_t offset);
  void release();
  void requireLive(const char* what) const;
  // A contiguous copy converted to `target` (this handle must be contiguous).
  Napi::Value convertTo(Napi::Env env, DType target) const;
  Napi::Object newView(Napi::Env env, std::vector<int64_t> shape, std::vector<int64_t> strides) const;
  // copyFrom(source, offset): numbers written from flat element `offset` of a contiguous tensor.
  Napi::Value copyRange(const Napi::CallbackInfo& info);

  Napi::Value GetDType(const Napi::CallbackInfo& info);
  Napi::Value GetShape(const Napi::CallbackInfo& info);
  Napi::Value GetStrides(const Napi::CallbackInfo& info);
  Napi::Value GetNumel(const Napi::CallbackInfo& info);
  Napi::Value GetByteLength(const Napi::CallbackInfo& info);
  Napi::Value GetIsContiguous(const Napi::CallbackInfo& info);
  Napi::Value GetDisposed(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value ToArray(const Napi::CallbackInfo& info);
  Napi::Value To(const Napi::CallbackInfo& info);
  Napi::Value Reshape(const Napi::CallbackInfo& info);
  Napi::Value Transpose(const Napi::CallbackInfo& info);
  Napi::Value Contiguous(const Napi::CallbackInfo& info);
  Napi::Value Clone(const Napi::CallbackInfo& info);
  Napi::Value CopyFrom(const Napi::CallbackInfo& info);
  Napi::Value Fill(const Napi::CallbackInfo& info);

  std::shared_ptr<Storage> storage_;
  DType dtype_ = DType::Float32;
  std::vector<int64_t> shape_;
  std::vector<int64_t> strides_;  // in elements
  int64_t offset_ = 0;            // in elements
};

// Host access to the elements a handle views, whatever the backend. base() is a host pointer
// standing for the view's element offset 0, so offsets computed from its strides apply to it as
// they do to data<T>(). On the CPU backend it is the tensor's own memory; on a GPU backend it is a
// staging copy of the span the view covers, downloaded when `load` is true and written back by
// store().
class HostSpan {
 public:
  HostSpan(const TensorWrap& t, bool load);
  char* base() const { return base_; }
  template <typename T>
  T* as() const {
    return reinterpret_cast<T*>(base_);
  }
  void store();

 private:
  char* device_;  // the view's element 0 on the device
  size_t bytes_;  // of the span from element 0 to the last element the view reaches
  ScratchBuffer<char> staging_;
  char* base_;
};

// Module-level tensor functions: tensor(dtype, shape, data?), zeros(dtype, shape).
void InitTensorFactories(Napi::Env env, Napi::Object exports);

// Parses a JS shape array (non-negative integers, element count and byte size that fit in memory).
std::vector<int64_t> ParseShape(Napi::Env env, Napi::Value value, DType dtype, const char* what);
DType ParseDType(Napi::Env env, Napi::Value value, const char* what);

}  // namespace rlhf::binding
