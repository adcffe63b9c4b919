// Tracked host memory: every tensor storage and every kernel scratch buffer is allocated here, so
// the live-bytes and peak-bytes counters tell exactly how much native memory an op used. Tests
// rely on this to prove that nothing leaks and that log-prob gathering never allocates [N, V].
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

namespace rlhf {

// 64-byte aligned allocation; throws std::bad_alloc (with the counters untouched) on failure.
void* trackedAlloc(size_t bytes);
void trackedFree(void* ptr, size_t bytes);

struct MemoryStats {
  int64_t liveBytes;    // bytes currently allocated through trackedAlloc
  int64_t peakBytes;    // highest liveBytes since the last resetPeakBytes()
  int64_t liveBuffers;  // allocations not yet freed
};
MemoryStats memoryStats();
void resetPeakBytes();  // peak := live

// A scratch array owned by a kernel for the duration of a call (RAII, tracked, uninitialised).
template <typename T>
class ScratchBuffer {
 public:
  ScratchBuffer() = default;
  explicit ScratchBuffer(size_t count)
      : data_(count ? static_cast<T*>(trackedAlloc(count * sizeof(T))) : nullptr), count_(count) {}
  ~ScratchBuffer() { release(); }
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  ScratchBuffer(ScratchBuffer&& other) noexcept : data_(other.data_), count_(other.count_) {
    other.data_ = nullptr;
    other.count_ = 0;
  }
  ScratchBuffer& operator=(ScratchBuffer&& other) noexcept {
    if (this != &other) {
      release();
      std::swap(data_, other.data_);
      std::swap(count_, other.count_);
    }
    return *this;
  }
  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return count_; }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }

 private:
  void release() {
    if (data_) trackedFree(data_, count_ * sizeof(T));
    data_ = nullptr;
    count_ = 0;
  }
  T* data_ = nullptr;
  size_t count_ = 0;
};

}  // namespace rlhf
