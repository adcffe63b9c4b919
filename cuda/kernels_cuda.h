// The CUDA backend's kernels: the same argument structs as src/kernels.h, with device pointers.
// Only built by CMakeLists.txt when nvcc is found. Every call checks CUDA errors and throws
// rlhf::cuda::CudaError with the failing call and CUDA's message.
#pragma once

#include <stdexcept>
#include <string>

#include "../src/kernels.h"

namespace rlhf::cuda {

class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct DeviceInfo {
  int deviceCount;         // 0 when no usable GPU/driver
  std::string error;       // why deviceCount is 0, if CUDA said
  int runtimeVersion;      // e.g. 13000
  int driverVersion;       // 0 without a driver
  std::string deviceName;  // of device 0
  int computeMajor, computeMinor;
  size_t totalMemory;
};
// Never throws: a machine without a GPU or driver reports 0 devices and the reason.
DeviceInfo deviceInfo();

// Device memory helpers for tests and the binding.
void* deviceAlloc(size_t bytes);
void deviceFree(void* ptr);
void copyToDevice(void* dst, const void* src, size_t bytes);
void copyToHost(void* dst, const void* src, size_t bytes);
void synchronize();

void siluMul(const SiluMulArgs& args);
void siluMulBackward(const SiluMulBackwardArgs& args);

}  // namespace rlhf::cuda
