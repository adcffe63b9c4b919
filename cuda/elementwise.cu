// Elementwise arithmetic on the GPU for the decoder's residual stream: dst += src, one thread per
// element, float32 math whatever the storage type.
#include "runtime.cuh"
#include "types.cuh"

namespace rlhf::cuda {
namespace {

constexpr unsigned kThreads = 256;

template <typename D>
__global__ void addIntoKernel(D* __restrict__ dst, const D* __restrict__ src, int64_t count) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  dst[i] = fromFloat<D>(toFloat(dst[i]) + toFloat(src[i]));
}

}  // namespace

template <typename T>
void addInto(const AddIntoArgsT<T>& p) {
  if (p.count == 0) return;
  addIntoKernel<<<blocksFor(p.count, kThreads), kThreads, 0, stream()>>>(devicePtr(p.dst), devicePtr(p.src), p.count);
  checkLaunch("addIntoKernel");
}

template void addInto<float>(const AddIntoArgsT<float>&);
template void addInto<bf16>(const AddIntoArgsT<bf16>&);

}  // namespace rlhf::cuda
