// The compute stream, device memory from a stream-ordered pool, copies and memory statistics.
//
// Allocation: cudaMallocAsync from the device's default memory pool with its release threshold
// raised to "never", so memory freed by one training step is reused by the next without going back
// to the driver (no cudaMalloc per step). The counters below track what the backend has handed
// out, as src/memory.cpp does for host memory.
#include <atomic>
#include <cstdint>
#include <mutex>
#include <sstream>

#include "device_buffer.cuh"
#include "runtime.cuh"

namespace rlhf::cuda {
namespace {

std::atomic<int64_t> gLiveBytes{0};
std::atomic<int64_t> gPeakBytes{0};
std::atomic<int64_t> gLiveBuffers{0};

std::once_flag gInitOnce;
cudaStream_t gStream = nullptr;

void init() {
  check(cudaStreamCreateWithFlags(&gStream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  cudaMemPool_t pool;
  check(cudaDeviceGetDefaultMemPool(&pool, 0), "cudaDeviceGetDefaultMemPool");
  uint64_t keepEverything = UINT64_MAX;
  check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keepEverything),
        "cudaMemPoolSetAttribute(ReleaseThreshold)");
}

void raisePeak(int64_t live) {
  int64_t peak = gPeakBytes.load(std::memory_order_relaxed);
  while (live > peak && !gPeakBytes.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
  }
}

bool overlaps(const void* a, const void* b, size_t bytes) {
  const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return x < y + bytes && y < x + bytes;
}

}  // namespace

cudaStream_t stream() {
  std::call_once(gInitOnce, init);
  return gStream;
}

void* deviceAlloc(size_t bytes) {
  void* ptr = nullptr;
  const cudaError_t status = cudaMallocAsync(&ptr, bytes == 0 ? 1 : bytes, stream());
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    std::ostringstream msg;
    msg << "out of GPU memory: cannot allocate " << bytes << " bytes (" << gLiveBytes.load()
        << " bytes already in use by rlhf-native tensors)";
    throw CudaError(msg.str());
  }
  check(status, "cudaMallocAsync");
  raisePeak(gLiveBytes.fetch_add(static_cast<int64_t>(bytes)) + static_cast<int64_t>(bytes));
  gLiveBuffers.fetch_add(1);
  return ptr;
}

void deviceFree(void* ptr, size_t bytes) {
  if (!ptr) return;
  // Called from destructors (a tensor's finalizer): report, never throw.
  if (cudaFreeAsync(ptr, stream()) != cudaSuccess) cudaGetLastError();
  gLiveBytes.fetch_sub(static_cast<int64_t>(bytes));
  gLiveBuffers.fetch_sub(1);
}

void zeroDevice(void* ptr, size_t bytes) {
  if (bytes) check(cudaMemsetAsync(ptr, 0, bytes, stream()), "cudaMemsetAsync");
}

void copyToDevice(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()), "cudaMemcpyAsync host->device");
  check(cudaStreamSynchronize(stream()), "cudaStreamSynchronize");
}

void copyToHost(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()), "cudaMemcpyAsync device->host");
  check(cudaStreamSynchronize(stream()), "cudaStreamSynchronize");
}

void copyOnDevice(void* dst, const void* src, size_t bytes) {
  if (!bytes || dst == src) return;
  if (overlaps(dst, src, bytes)) {
    // cudaMemcpy is undefined for overlapping ranges: go through a temporary buffer.
    DeviceBuffer<char> tmp(bytes);
    check(cudaMemcpyAsync(tmp.data(), src, bytes, cudaMemcpyDeviceToDevice, stream()), "cudaMemcpyAsync");
    check(cudaMemcpyAsync(dst, tmp.data(), bytes, cudaMemcpyDeviceToDevice, stream()), "cudaMemcpyAsync");
    return;
  }
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()), "cudaMemcpyAsync device->device");
}

MemoryStats deviceMemoryStats() { return {gLiveBytes.load(), gPeakBytes.load(), gLiveBuffers.load()}; }

void resetDevicePeakBytes() { gPeakBytes.store(gLiveBytes.load()); }

void synchronize() { check(cudaStreamSynchronize(stream()), "cudaStreamSynchronize"); }

}  // namespace rlhf::cuda
