// AdamW on the GPU: one fused launch updates every tensor of the list (tensor_list.cuh: one block
// per 8192-element chunk of each tensor, float4 accesses where aligned). The per-step scalars are
// computed on the host in float64 exactly as src/cpu/adamw.cpp computes them, and the per-element
// update repeats its float32 operations in the same order, each rounded separately (_rn
// intrinsics: no FMA contraction; sqrtf and division are IEEE-rounded without fast-math), so the
// result matches the CPU bit for bit.
#include <cmath>
#include <vector>

#include "runtime.cuh"
#include "tensor_list.cuh"

namespace rlhf::cuda {
namespace {

constexpr unsigned kThreads = 256;

// The step's scalars, as the CPU kernel names them.
struct AdamWScalars {
  float decay, stepSize, bc2Sqrt, oneMinusBeta1, oneMinusBeta2, beta2, eps, beta1AsWeight;
  bool lerpFromStart;
};

// One element: p ← p·decay; m ← lerp(m, g, 1 − β1); v ← β2·v + (1 − β2)·g·g;
// p ← p − stepSize · m / (sqrt(v) / sqrt(bc2) + eps).
__device__ __forceinline__ void adamwElement(const AdamWScalars& s, float g, float& param, float& m, float& v) {
  const float decayed = __fmul_rn(param, s.decay);
  m = s.lerpFromStart ? __fadd_rn(m, __fmul_rn(s.oneMinusBeta1, __fsub_rn(g, m)))
                      : __fsub_rn(g, __fmul_rn(__fsub_rn(g, m), s.beta1AsWeight));
  v = __fadd_rn(__fmul_rn(s.beta2, v), __fmul_rn(__fmul_rn(s.oneMinusBeta2, g), g));
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), s.bc2Sqrt), s.eps);
  param = __fsub_rn(decayed, __fmul_rn(s.stepSize, __fdiv_rn(m, denom)));
}

// Tensors: ptr = {param, grad, m, v}. Block b updates global chunk b.
__global__ void adamwKernel(const ListTensor<4>* table, int64_t size, AdamWScalars s) {
  const ListTensor<4> t = findChunk(table, size, blockIdx.x);
  forChunk(t, blockIdx.x, [&](int64_t i, auto run) {
    constexpr int n = decltype(run)::kSize;
    Pack<float, n> param = loadPack<n>(t.ptr[0] + i), m = loadPack<n>(t.ptr[2] + i), v = loadPack<n>(t.ptr[3] + i);
    const Pack<float, n> g = loadPack<n>(t.ptr[1] + i);
#pragma unroll
    for (int k = 0; k < n; ++k) adamwElement(s, g.v[k], param.v[k], m.v[k], v.v[k]);
    storePack<n>(t.ptr[0] + i, param);
    storePack<n>(t.ptr[2] + i, m);
    storePack<n>(t.ptr[3] + i, v);
  });
}

}  // namespace

void adamw(const AdamWArgs& p) {
  std::vector<ListTensor<4>> entries;
  for (int64_t i = 0; i < p.numTensors; ++i) {
    const AdamWTensor& t = p.tensors[i];
    // The table holds mutable pointers; the kernel only reads grad.
    entries.push_back({{t.param, const_cast<float*>(t.grad), t.m, t.v}, t.count, 0, false});
  }
  const ListTable<4> table = uploadList(entries);
  if (table.chunks == 0) return;

  // Per-step scalars in float64 (PyTorch's Python floats), rounded to float32 where PyTorch's
  // float32 tensor ops would: the same expressions as src/cpu/adamw.cpp.
  const double t = static_cast<double>(p.step);
  const double biasCorrection1 = 1.0 - std::pow(p.beta1, t);
  const double biasCorrection2 = 1.0 - std::pow(p.beta2, t);
  AdamWScalars s{};
  s.decay = static_cast<float>(1.0 - p.lr * p.weightDecay);
  s.stepSize = static_cast<float>(p.lr / biasCorrection1);
  s.bc2Sqrt = static_cast<float>(std::sqrt(biasCorrection2));
  s.oneMinusBeta1 = static_cast<float>(1.0 - p.beta1);
  s.oneMinusBeta2 = static_cast<float>(1.0 - p.beta2);
  s.beta2 = static_cast<float>(p.beta2);
  s.eps = static_cast<float>(p.eps);
  s.lerpFromStart = s.oneMinusBeta1 < 0.5f;  // torch.lerp's two formulas, chosen by weight
  s.beta1AsWeight = 1.0f - s.oneMinusBeta1;

  adamwKernel<<<static_cast<unsigned>(table.chunks), kThreads, 0, stream()>>>(table.tensors.data(), table.size, s);
  checkLaunch("adamwKernel");
}

}  // namespace rlhf::cuda
