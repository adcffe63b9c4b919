// Device discovery and memory helpers.
#include <cuda_runtime.h>

#include "check.cuh"
#include "kernels_cuda.h"

namespace rlhf::cuda {

DeviceInfo deviceInfo() {
  DeviceInfo info{};
  cudaRuntimeGetVersion(&info.runtimeVersion);
  cudaDriverGetVersion(&info.driverVersion);
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    info.error = std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
    cudaGetLastError();  // clear the sticky error so later calls are not confused by it
    return info;
  }
  info.deviceCount = count;
  if (count > 0) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
      info.deviceName = prop.name;
      info.computeMajor = prop.major;
      info.computeMinor = prop.minor;
      info.totalMemory = prop.totalGlobalMem;
    }
  }
  return info;
}

void* deviceAlloc(size_t bytes) {
  void* ptr = nullptr;
  check(cudaMalloc(&ptr, bytes), "cudaMalloc");
  return ptr;
}

void deviceFree(void* ptr) { check(cudaFree(ptr), "cudaFree"); }

void copyToDevice(void* dst, const void* src, size_t bytes) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy host->device");
}

void copyToHost(void* dst, const void* src, size_t bytes) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy device->host");
}

void synchronize() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

}  // namespace rlhf::cuda
