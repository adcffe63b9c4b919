// Device discovery.
#include "runtime.cuh"

namespace rlhf::cuda {

DeviceInfo deviceInfo() {
  DeviceInfo info{};
  cudaRuntimeGetVersion(&info.runtimeVersion);
  cudaDriverGetVersion(&info.driverVersion);
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    info.error = std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
    cudaGetLastError();  // clear the error so later calls are not confused by it
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

}  // namespace rlhf::cuda
