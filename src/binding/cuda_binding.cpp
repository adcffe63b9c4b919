// cudaInfo() -> { deviceCount, error, runtimeVersion, driverVersion, deviceName, computeCapability,
// totalMemory, gemmBackend }: only in the CUDA addon built by CMakeLists.txt (RLHF_WITH_CUDA). `gemmBackend` says
// which GEMM backend runs (cuBLASLt and the file it loaded from, or the handwritten kernels and why).
#ifdef RLHF_WITH_CUDA

#include "../../cuda/kernels_cuda.h"
#include "registry.h"

namespace rlhf::binding {
namespace {

Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  const cuda::DeviceInfo d = cuda::deviceInfo();
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("deviceCount", d.deviceCount);
  out.Set("error", d.error);
  out.Set("runtimeVersion", d.runtimeVersion);
  out.Set("driverVersion", d.driverVersion);
  out.Set("deviceName", d.deviceName);
  out.Set("computeCapability", std::to_string(d.computeMajor) + "." + std::to_string(d.computeMinor));
  out.Set("totalMemory", static_cast<double>(d.totalMemory));
  out.Set("gemmBackend", cuda::gemmBackendDescription());
  return out;
}

}  // namespace

RLHF_BINDING_EXPORTS(cuda) {
  exports.Set("cudaInfo", Napi::Function::New(env, CudaInfo, "cudaInfo"));
}

}  // namespace rlhf::binding

#endif  // RLHF_WITH_CUDA
