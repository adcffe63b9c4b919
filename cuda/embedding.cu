// Embedding on the GPU. The lookup is a row gather: one block per token copies its table row in
// 16-byte packs (8 bf16 or 4 floats) when the row length and the pointers allow, else element by
// element. The backward scatter-adds each token's dOut row into the float32 dTable with atomicAdd.
#include <algorithm>

#include "runtime.cuh"
#include "types.cuh"
#include "vec.cuh"

namespace rlhf::cuda {
namespace {

constexpr int64_t kMaxThreads = 256;

// Threads for a row of `packs` packs: one pack per thread up to kMaxThreads, in whole warps.
unsigned rowThreads(int64_t packs) {
  return static_cast<unsigned>(std::min<int64_t>(kMaxThreads, (packs + 31) / 32 * 32));
}

// out[i, :] = table[ids[i], :]. table [V, dim], out [n, dim], dim a multiple of N. Grid: one block
// per token i; its threads stride over the row's N-element packs (consecutive threads, consecutive
// packs: coalesced).
template <typename D, int N>
__global__ void embeddingKernel(const D* table, const int32_t* ids, D* out, int64_t dim) {
  const int64_t row = blockIdx.x;
  const D* src = table + static_cast<int64_t>(ids[row]) * dim;
  D* dst = out + row * dim;
  for (int64_t j = threadIdx.x * int64_t{N}; j < dim; j += int64_t{blockDim.x} * N) {
    storePack<N>(dst + j, loadPack<N>(src + j));
  }
}

// dTable[ids[i], :] += dOut[i, :], with the same mapping as the forward. Tokens with the same id
// add into the same row concurrently, so the additions are atomic (float32 atomicAdd, done in L2);
// their order, and so the last bits of a sum of repeated ids, may vary from run to run (the CPU
// backend is the deterministic one).
template <typename D, int N>
__global__ void embeddingBackwardKernel(const D* dOut, const int32_t* ids, float* dTable, int64_t dim) {
  const int64_t row = blockIdx.x;
  const D* src = dOut + row * dim;
  float* dst = dTable + static_cast<int64_t>(ids[row]) * dim;
  for (int64_t j = threadIdx.x * int64_t{N}; j < dim; j += int64_t{blockDim.x} * N) {
    const Pack<D, N> g = loadPack<N>(src + j);
#pragma unroll
    for (int k = 0; k < N; ++k) atomicAdd(dst + j + k, toFloat(g.v[k]));
  }
}

}  // namespace

template <typename T>
void embedding(const EmbeddingArgsT<T>& p) {
  if (p.n == 0 || p.dim == 0) return;
  using D = DeviceType<T>;
  constexpr int kPack = kPack16<D>;
  const D* table = devicePtr(p.table);
  D* out = devicePtr(p.out);
  if (p.dim % kPack == 0 && allAligned(16, {table, out})) {
    embeddingKernel<D, kPack><<<static_cast<unsigned>(p.n), rowThreads(p.dim / kPack), 0, stream()>>>(table, p.ids, out,
                                                                                                      p.dim);
  } else {
    embeddingKernel<D, 1><<<static_cast<unsigned>(p.n), rowThreads(p.dim), 0, stream()>>>(table, p.ids, out, p.dim);
  }
  checkLaunch("embeddingKernel");
}

template <typename T>
void embeddingBackward(const EmbeddingBackwardArgsT<T>& p) {
  if (p.n == 0 || p.dim == 0) return;
  using D = DeviceType<T>;
  constexpr int kPack = kPack16<D>;
  const D* dOut = devicePtr(p.dOut);
  if (p.dim % kPack == 0 && allAligned(16, {dOut})) {
    embeddingBackwardKernel<D, kPack><<<static_cast<unsigned>(p.n), rowThreads(p.dim / kPack), 0, stream()>>>(
        dOut, p.ids, p.dTable, p.dim);
  } else {
    embeddingBackwardKernel<D, 1><<<static_cast<unsigned>(p.n), rowThreads(p.dim), 0, stream()>>>(dOut, p.ids,
                                                                                                  p.dTable, p.dim);
  }
  checkLaunch("embeddingBackwardKernel");
}

template void embedding<float>(const EmbeddingArgsT<float>&);
template void embedding<bf16>(const EmbeddingArgsT<bf16>&);
template void embeddingBackward<float>(const EmbeddingBackwardArgsT<float>&);
template void embeddingBackward<bf16>(const EmbeddingBackwardArgsT<bf16>&);

}  // namespace rlhf::cuda
