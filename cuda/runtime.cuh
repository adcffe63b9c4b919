// Shared by the CUDA sources: error checking, the compute stream, launch geometry.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "kernels_cuda.h"

namespace rlhf::cuda {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw CudaError(std::string(what) + " failed: " + cudaGetErrorName(status) + ": " + cudaGetErrorString(status));
  }
}

// After a kernel launch: reports a bad launch configuration (or an earlier asynchronous fault) at
// once, naming the kernel.
inline void checkLaunch(const char* kernel) { check(cudaGetLastError(), kernel); }

// The stream every kernel, copy, allocation and free of the backend is ordered on (created on
// first use, non-blocking with respect to the legacy default stream).
cudaStream_t stream();

inline unsigned blocksFor(int64_t count, unsigned threads) {
  return static_cast<unsigned>((count + threads - 1) / threads);
}

// The streaming multiprocessors of the current device (queried once), for kernels that size a
// persistent grid to the card.
inline int multiprocessorCount() {
  static const int count = [] {
    int device = 0, sms = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
    return sms;
  }();
  return count;
}

}  // namespace rlhf::cuda
