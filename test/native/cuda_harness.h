// CUDA-vs-CPU parity helpers for the native tests: device arrays, output poisoning, bfloat16
// rounding and tolerance checks. Tests call requireCuda() first; it SKIPs without a GPU (or in a
// build without CUDA, where these helpers do not exist).
#pragma once

#ifdef RLHF_WITH_CUDA

#include <cmath>
#include <cstddef>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "../../cuda/kernels_cuda.h"
#include "harness.h"

namespace rlhf::test {

// Skips the calling test unless a CUDA device is usable.
inline void requireCuda() {
  const cuda::DeviceInfo info = cuda::deviceInfo();
  if (info.deviceCount == 0) SKIP("no CUDA device: " + info.error);
}

// Rounds each value to bfloat16 (what a bf16 tensor holds) and back to float.
inline std::vector<float> roundToBf16(const std::vector<float>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16ToFloat(floatToBf16(v[i]));
  return out;
}

// A device array of T (float, bf16 or int32_t) filled from host values; bf16 arrays take floats and
// round them. poison() fills it with NaN (0xFF bytes) so that an output a kernel fails to write
// cannot pass a comparison.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t count) : count_(count), ptr_(static_cast<T*>(cuda::deviceAlloc(bytes()))) { poison(); }
  template <typename H>
  explicit DeviceArray(const std::vector<H>& host) : DeviceArray(host.size()) {
    upload(host);
  }
  ~DeviceArray() { cuda::deviceFree(ptr_, bytes()); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* data() { return ptr_; }
  size_t size() const { return count_; }

  template <typename H>
  void upload(const std::vector<H>& host) {
    std::vector<T> staged(count_);
    for (size_t i = 0; i < count_; ++i) staged[i] = toStorage(host[i]);
    cuda::copyToDevice(ptr_, staged.data(), bytes());
  }
  void poison() {
    std::vector<unsigned char> ff(bytes(), 0xFF);
    cuda::copyToDevice(ptr_, ff.data(), bytes());
  }
  // The contents as floats (bf16 widened).
  std::vector<float> download() const {
    std::vector<T> staged(count_);
    cuda::copyToHost(staged.data(), ptr_, bytes());
    std::vector<float> out(count_);
    for (size_t i = 0; i < count_; ++i) out[i] = toFloat(staged[i]);
    return out;
  }

 private:
  size_t bytes() const { return count_ * sizeof(T); }
  template <typename H>
  static T toStorage(H v) {
    if constexpr (std::is_same_v<T, bf16>) return bf16{floatToBf16(static_cast<float>(v))};
    else return static_cast<T>(v);
  }
  static float toFloat(T v) {
    if constexpr (std::is_same_v<T, bf16>) return bf16ToFloat(v.bits);
    else return static_cast<float>(v);
  }
  size_t count_;
  T* ptr_;
};

// The values a tensor of T holds: rounded to bfloat16 when T is bf16, unchanged for float.
template <typename T>
std::vector<float> storedAs(std::vector<float> v) {
  if constexpr (std::is_same_v<T, bf16>) return roundToBf16(v);
  else return v;
}

// A DeviceArray seen from `offset` elements into its allocation: offset 1 breaks the 16-byte
// alignment of the pool's buffers, so that kernels take their unvectorised paths.
template <typename T>
class OffsetDeviceArray {
 public:
  // Poisoned (NaN) contents.
  OffsetDeviceArray(size_t count, size_t offset) : array_(count + offset), offset_(offset) {}
  OffsetDeviceArray(const std::vector<float>& host, size_t offset) : OffsetDeviceArray(host.size(), offset) {
    std::vector<float> staged(offset, 0.0f);
    staged.insert(staged.end(), host.begin(), host.end());
    array_.upload(staged);
  }
  T* data() { return array_.data() + offset_; }
  std::vector<float> download() const {
    const std::vector<float> all = array_.download();
    return std::vector<float>(all.begin() + static_cast<std::ptrdiff_t>(offset_), all.end());
  }

 private:
  DeviceArray<T> array_;
  size_t offset_;
};

// The largest |v[i]|: the magnitude of a result, for tolerances relative to it.
inline double maxAbs(const std::vector<float>& v) {
  double m = 0.0;
  for (float x : v) m = std::fmax(m, std::fabs(static_cast<double>(x)));
  return m;
}

// Fails (reporting the worst elements) unless |got − want| ≤ atol + rtol·|want| everywhere;
// a NaN or infinity in `got` passes only where `want` has the same value.
inline void checkParity(const char* file, int line, const std::string& label, const std::vector<float>& got,
                        const std::vector<float>& want, double rtol, double atol) {
  if (got.size() != want.size()) {
    reportFailure(file, line, label + ": size " + std::to_string(got.size()) + " != " + std::to_string(want.size()));
    return;
  }
  std::vector<double> w(want.begin(), want.end());
  checkAllClose(file, line, label.c_str(), got.data(), w.data(), got.size(), rtol, atol);
}

}  // namespace rlhf::test

#define CHECK_PARITY(label, got, want, rtol, atol) \
  ::rlhf::test::checkParity(__FILE__, __LINE__, label, got, want, rtol, atol)

#endif  // RLHF_WITH_CUDA
