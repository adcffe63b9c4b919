// Module initialiser of the native addon: the tensor class and factories, memory statistics of the
// backend's device (host memory for the CPU backend), CPU thread control, the backend's name, and
// every registered op binding.
#include <napi.h>

#include "../cpu/gemm.h"
#include "../cpu/parallel.h"
#include "backend.h"
#include "registry.h"
#include "tensor_wrap.h"

namespace rlhf::binding {
namespace {

Napi::Value MemoryStatsJs(const Napi::CallbackInfo& info) {
  const MemoryStats s = backend::deviceMemoryStats();
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("liveBytes", static_cast<double>(s.liveBytes));
  out.Set("peakBytes", static_cast<double>(s.peakBytes));
  out.Set("liveBuffers", static_cast<double>(s.liveBuffers));
  return out;
}

Napi::Value ResetPeakBytesJs(const Napi::CallbackInfo& info) {
  backend::resetDevicePeakBytes();
  return info.Env().Undefined();
}

Napi::Value NumThreadsJs(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), cpu::numThreads());
}

// cpuInfo() -> { threads, gemmKernels }: the CPU kernels' thread count and GEMM micro-kernel set.
Napi::Value CpuInfoJs(const Napi::CallbackInfo& info) {
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("threads", cpu::numThreads());
  out.Set("gemmKernels", cpu::sgemmKernelName());
  return out;
}

Napi::Value SetNumThreadsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double n = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
  if (!(n >= 1 && n <= 1024) || n != static_cast<int>(n)) {
    throw Napi::RangeError::New(env, "setNumThreads(n): n must be an integer in [1, 1024]");
  }
  cpu::setNumThreads(static_cast<int>(n));
  return env.Undefined();
}

}  // namespace

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  // Where this addon's tensors live and its ops run. The CUDA build also exports cudaInfo()
  // (cuda_binding.cpp).
  exports.Set("backend", kBackendName);
  TensorWrap::Init(env, exports);
  InitTensorFactories(env, exports);
  exports.Set("memoryStats", Napi::Function::New(env, MemoryStatsJs, "memoryStats"));
  exports.Set("resetPeakBytes", Napi::Function::New(env, ResetPeakBytesJs, "resetPeakBytes"));
  exports.Set("numThreads", Napi::Function::New(env, NumThreadsJs, "numThreads"));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreadsJs, "setNumThreads"));
  exports.Set("cpuInfo", Napi::Function::New(env, CpuInfoJs, "cpuInfo"));
  initRegisteredExports(env, exports);
  return exports;
}

}  // namespace rlhf::binding

// NODE_API_MODULE pastes the initialiser's name into an identifier, so it must be unqualified.
static Napi::Object InitRlhfNative(Napi::Env env, Napi::Object exports) {
  return rlhf::binding::InitAddon(env, exports);
}
NODE_API_MODULE(rlhf_native, InitRlhfNative)
