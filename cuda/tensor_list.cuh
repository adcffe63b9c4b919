// One kernel launch over a list of float32 tensors (AdamW's parameters, the gradients of a norm).
// Every tensor is cut into chunks of kListChunk elements; the grid has one block per chunk of every
// tensor, and a block finds its tensor by a binary search over the first chunk indices in a small
// device table (a few hundred entries for a LoRA model, read through the cache by every block).
#pragma once

#include <cstdint>
#include <vector>

#include "device_buffer.cuh"
#include "vec.cuh"

namespace rlhf::cuda {

// Elements per block: a multiple of 4, so that chunks of a float4-aligned tensor stay aligned.
constexpr int64_t kListChunk = 8192;

// kPtrs tensors of `count` floats each, processed together (e.g. AdamW's param, grad, m, v).
template <int kPtrs>
struct ListTensor {
  float* ptr[kPtrs];
  int64_t count;
  int64_t firstChunk;  // global index of the tensor's first chunk
  bool vec4;           // every pointer 16-byte aligned: chunks move as float4s (a scalar tail at the end)
};

// The table on the device; `chunks` is the grid size.
template <int kPtrs>
struct ListTable {
  DeviceBuffer<ListTensor<kPtrs>> tensors;
  int64_t size = 0;
  int64_t chunks = 0;
};

// Host: fills in firstChunk and vec4, drops empty tensors and uploads the rest (in list order).
template <int kPtrs>
ListTable<kPtrs> uploadList(const std::vector<ListTensor<kPtrs>>& entries) {
  std::vector<ListTensor<kPtrs>> kept;
  int64_t chunks = 0;
  for (ListTensor<kPtrs> e : entries) {
    if (e.count == 0) continue;
    e.firstChunk = chunks;
    e.vec4 = true;
    for (const float* p : e.ptr) e.vec4 = e.vec4 && allAligned(16, {p});
    chunks += (e.count + kListChunk - 1) / kListChunk;
    kept.push_back(e);
  }
  ListTable<kPtrs> table;
  table.size = static_cast<int64_t>(kept.size());
  table.chunks = chunks;
  if (!kept.empty()) {
    table.tensors = DeviceBuffer<ListTensor<kPtrs>>(kept.size());
    copyToDevice(table.tensors.data(), kept.data(), kept.size() * sizeof(ListTensor<kPtrs>));
  }
  return table;
}

// Device: the tensor holding global chunk `chunk` (the table is sorted by firstChunk, size ≥ 1).
template <int kPtrs>
__device__ ListTensor<kPtrs> findChunk(const ListTensor<kPtrs>* table, int64_t size, int64_t chunk) {
  int64_t lo = 0, hi = size - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (table[mid].firstChunk <= chunk) lo = mid;
    else hi = mid - 1;
  }
  return table[lo];
}

// A run of kSize consecutive elements handed to forChunk's callback.
template <int N>
struct ElementRun {
  static constexpr int kSize = N;
};

// Calls f(i, ElementRun<n>{}) for the runs [i, i + n) that cover this block's chunk of `tensor`:
// n = 4 (float4-aligned) when tensor.vec4, plus n = 1 for the elements after the last whole run.
// Consecutive threads take consecutive runs (coalesced).
template <int kPtrs, typename F>
__device__ __forceinline__ void forChunk(const ListTensor<kPtrs>& tensor, int64_t chunk, F f) {
  const int64_t begin = (chunk - tensor.firstChunk) * kListChunk;
  const int64_t end = begin + kListChunk < tensor.count ? begin + kListChunk : tensor.count;
  int64_t scalarBegin = begin;
  if (tensor.vec4) {
    scalarBegin = begin + (end - begin) / 4 * 4;
    for (int64_t i = begin + 4 * threadIdx.x; i < scalarBegin; i += 4 * int64_t{blockDim.x}) f(i, ElementRun<4>{});
  }
  for (int64_t i = scalarBegin + threadIdx.x; i < end; i += blockDim.x) f(i, ElementRun<1>{});
}

}  // namespace rlhf::cuda
