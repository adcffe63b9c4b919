// Element type conversions on the device (tensor.to(dtype) on the CUDA backend).
#include "runtime.cuh"
#include "types.cuh"

namespace rlhf::cuda {
namespace {

constexpr unsigned kThreads = 256;

__device__ __forceinline__ float toFloat(int32_t x) { return static_cast<float>(x); }

template <typename S, typename D>
__global__ void convertKernel(const S* src, D* dst, int64_t count) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < count) dst[i] = fromFloat<D>(toFloat(src[i]));
}

template <typename S>
void launchFrom(const S* src, void* dst, DType to, int64_t count) {
  const unsigned blocks = blocksFor(count, kThreads);
  if (to == DType::BFloat16) {
    convertKernel<<<blocks, kThreads, 0, stream()>>>(src, static_cast<__nv_bfloat16*>(dst), count);
  } else {
    convertKernel<<<blocks, kThreads, 0, stream()>>>(src, static_cast<float*>(dst), count);
  }
  checkLaunch("convertKernel");
}

}  // namespace

void convert(const void* src, DType from, void* dst, DType to, int64_t count) {
  if (count == 0) return;
  if (from == to) {
    copyOnDevice(dst, src, static_cast<size_t>(count) * dtypeSize(from));
    return;
  }
  switch (from) {
    case DType::Float32: launchFrom(static_cast<const float*>(src), dst, to, count); break;
    case DType::BFloat16: launchFrom(static_cast<const __nv_bfloat16*>(src), dst, to, count); break;
    case DType::Int32: launchFrom(static_cast<const int32_t*>(src), dst, to, count); break;
  }
}

}  // namespace rlhf::cuda
