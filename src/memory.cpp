#include "memory.h"

#include <atomic>
#include <cstdlib>
#include <new>

namespace rlhf {
namespace {

std::atomic<int64_t> gLiveBytes{0};
std::atomic<int64_t> gPeakBytes{0};
std::atomic<int64_t> gLiveBuffers{0};

constexpr size_t kAlignment = 64;  // a cache line; also enough for any SIMD load

void raisePeak(int64_t live) {
  int64_t peak = gPeakBytes.load(std::memory_order_relaxed);
  while (live > peak && !gPeakBytes.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
  }
}

}  // namespace

void* trackedAlloc(size_t bytes) {
  // aligned_alloc wants a size that is a multiple of the alignment.
  const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  if (rounded < bytes) throw std::bad_alloc();
  void* ptr = std::aligned_alloc(kAlignment, rounded == 0 ? kAlignment : rounded);
  if (!ptr) throw std::bad_alloc();
  const int64_t live = gLiveBytes.fetch_add(static_cast<int64_t>(bytes)) + static_cast<int64_t>(bytes);
  gLiveBuffers.fetch_add(1);
  raisePeak(live);
  return ptr;
}

void trackedFree(void* ptr, size_t bytes) {
  if (!ptr) return;
  std::free(ptr);
  gLiveBytes.fetch_sub(static_cast<int64_t>(bytes));
  gLiveBuffers.fetch_sub(1);
}

MemoryStats memoryStats() {
  return {gLiveBytes.load(), gPeakBytes.load(), gLiveBuffers.load()};
}

void resetPeakBytes() { gPeakBytes.store(gLiveBytes.load()); }

}  // namespace rlhf
