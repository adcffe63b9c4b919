// SwiGLU pieces on the GPU: h = silu(gate) · up and its backward, one thread per element, float32
// math whatever the storage type.
#include "runtime.cuh"
#include "types.cuh"

namespace rlhf::cuda {
namespace {

constexpr unsigned kThreads = 256;

template <typename D>
__global__ void siluMulKernel(const D* gate, const D* up, D* out, int64_t count) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  const float g = toFloat(gate[i]);
  const float sig = 1.0f / (1.0f + expf(-g));
  out[i] = fromFloat<D>(g * sig * toFloat(up[i]));
}

// d silu(g)/dg = σ(g) · (1 + g · (1 − σ(g))).
template <typename D>
__global__ void siluMulBackwardKernel(const D* gate, const D* up, const D* dOut, D* dGate, D* dUp, int64_t count) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  const float g = toFloat(gate[i]);
  const float sig = 1.0f / (1.0f + expf(-g));
  const float d = toFloat(dOut[i]);
  dUp[i] = fromFloat<D>(d * g * sig);
  dGate[i] = fromFloat<D>(d * toFloat(up[i]) * sig * (1.0f + g * (1.0f - sig)));
}

}  // namespace

template <typename T>
void siluMul(const SiluMulArgsT<T>& p) {
  if (p.count == 0) return;
  siluMulKernel<<<blocksFor(p.count, kThreads), kThreads, 0, stream()>>>(devicePtr(p.gate), devicePtr(p.up),
                                                                          devicePtr(p.out), p.count);
  checkLaunch("siluMulKernel");
}

template <typename T>
void siluMulBackward(const SiluMulBackwardArgsT<T>& p) {
  if (p.count == 0) return;
  siluMulBackwardKernel<<<blocksFor(p.count, kThreads), kThreads, 0, stream()>>>(
      devicePtr(p.gate), devicePtr(p.up), devicePtr(p.dOut), devicePtr(p.dGate), devicePtr(p.dUp), p.count);
  checkLaunch("siluMulBackwardKernel");
}

template void siluMul<float>(const SiluMulArgsT<float>&);
template void siluMul<bf16>(const SiluMulArgsT<bf16>&);
template void siluMulBackward<float>(const SiluMulBackwardArgsT<float>&);
template void siluMulBackward<bf16>(const SiluMulBackwardArgsT<bf16>&);

}  // namespace rlhf::cuda
