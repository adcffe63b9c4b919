// SwiGLU pieces on the GPU: h = silu(gate) · up and its backward, one thread per element.
#include "check.cuh"

namespace rlhf::cuda {
namespace {

constexpr unsigned kThreads = 256;

__global__ void siluMulKernel(const float* gate, const float* up, float* out, int64_t count) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  const float g = gate[i];
  const float sig = 1.0f / (1.0f + expf(-g));
  out[i] = g * sig * up[i];
}

__global__ void siluMulBackwardKernel(const float* gate, const float* up, const float* dOut, float* dGate,
                                      float* dUp, int64_t count) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  const float g = gate[i];
  const float sig = 1.0f / (1.0f + expf(-g));
  const float d = dOut[i];
  dUp[i] = d * g * sig;
  dGate[i] = d * up[i] * sig * (1.0f + g * (1.0f - sig));
}

}  // namespace

void siluMul(const SiluMulArgs& p) {
  if (p.count == 0) return;
  siluMulKernel<<<blocksFor(p.count, kThreads), kThreads>>>(p.gate, p.up, p.out, p.count);
  checkLaunch("siluMulKernel");
}

void siluMulBackward(const SiluMulBackwardArgs& p) {
  if (p.count == 0) return;
  siluMulBackwardKernel<<<blocksFor(p.count, kThreads), kThreads>>>(p.gate, p.up, p.dOut, p.dGate, p.dUp, p.count);
  checkLaunch("siluMulBackwardKernel");
}

}  // namespace rlhf::cuda
