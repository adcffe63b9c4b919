// Global gradient norm pieces on the GPU: Σ x² over every tensor of a list in float64, and in-place
// scaling (gradient clipping). Both cover the whole list in one launch (tensor_list.cuh: one block
// per 8192-element chunk of each tensor, float4 accesses where aligned).
//
// Σ x²: each block sums its chunk in float64 (per-thread sums, then the block tree) into its own
// slot of a partials array, and one block adds the partials up in float64; one 8-byte copy brings
// the total back. No atomics: the result depends only on the data and the list, never on timing.
#include <vector>

#include "reduce.cuh"
#include "runtime.cuh"
#include "tensor_list.cuh"

namespace rlhf::cuda {
namespace {

constexpr unsigned kThreads = 256;
constexpr unsigned kSumThreads = 1024;

// partials[b] = Σ x² over global chunk b, in float64.
__global__ void chunkSumSquaresKernel(const ListTensor<1>* table, int64_t size, double* partials) {
  __shared__ double scratch[32];
  const ListTensor<1> t = findChunk(table, size, blockIdx.x);
  double sum = 0.0;
  forChunk(t, blockIdx.x, [&](int64_t i, auto run) {
    constexpr int n = decltype(run)::kSize;
    const Pack<float, n> x = loadPack<n>(t.ptr[0] + i);
#pragma unroll
    for (int k = 0; k < n; ++k) {
      const double v = x.v[k];
      sum += v * v;
    }
  });
  sum = blockSum(sum, scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

// out[0] = Σ partials[0, count), in float64; one block.
__global__ void __launch_bounds__(kSumThreads) sumPartialsKernel(const double* partials, int64_t count,
                                                                 double* out) {
  __shared__ double scratch[32];
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) sum += partials[i];
  sum = blockSum(sum, scratch);
  if (threadIdx.x == 0) out[0] = sum;
}

__global__ void scaleKernel(const ListTensor<1>* table, int64_t size, float factor) {
  const ListTensor<1> t = findChunk(table, size, blockIdx.x);
  forChunk(t, blockIdx.x, [&](int64_t i, auto run) {
    constexpr int n = decltype(run)::kSize;
    Pack<float, n> x = loadPack<n>(t.ptr[0] + i);
#pragma unroll
    for (int k = 0; k < n; ++k) x.v[k] *= factor;
    storePack<n>(t.ptr[0] + i, x);
  });
}

ListTable<1> uploadTensorList(const TensorList& tensors) {
  std::vector<ListTensor<1>> entries;
  for (int64_t i = 0; i < tensors.size; ++i) entries.push_back({{tensors.data[i]}, tensors.counts[i], 0, false});
  return uploadList(entries);
}

}  // namespace

double sumOfSquares(const TensorList& tensors) {
  const ListTable<1> table = uploadTensorList(tensors);
  if (table.chunks == 0) return 0.0;
  DeviceBuffer<double> partials(static_cast<size_t>(table.chunks) + 1);  // the chunks' sums, then the total
  double* total = partials.data() + table.chunks;
  chunkSumSquaresKernel<<<static_cast<unsigned>(table.chunks), kThreads, 0, stream()>>>(table.tensors.data(),
                                                                                         table.size, partials.data());
  checkLaunch("chunkSumSquaresKernel");
  sumPartialsKernel<<<1, kSumThreads, 0, stream()>>>(partials.data(), table.chunks, total);
  checkLaunch("sumPartialsKernel");
  double result = 0.0;
  copyToHost(&result, total, sizeof result);
  return result;
}

void scaleInPlace(const TensorList& tensors, float factor) {
  const ListTable<1> table = uploadTensorList(tensors);
  if (table.chunks == 0) return;
  scaleKernel<<<static_cast<unsigned>(table.chunks), kThreads, 0, stream()>>>(table.tensors.data(), table.size,
                                                                               factor);
  checkLaunch("scaleKernel");
}

}  // namespace rlhf::cuda
