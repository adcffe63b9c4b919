// Shape specs for ops over "rows" whose tensors are shaped [...batch, last] (tokens as [N], [B, T],
// or heads as [B, T, H]): the leading dims get the symbols B0, B1, ... so that every tensor of an
// op must agree with the first one dimension by dimension, and the kernel sees rows = their product.
#pragma once

#include <initializer_list>
#include <string>
#include <vector>

#include "args.h"

namespace rlhf::binding {

constexpr size_t kMaxBatchDims = 6;
inline constexpr const char* kBatchDimNames[kMaxBatchDims] = {"B0", "B1", "B2", "B3", "B4", "B5"};

// {B0, ..., B<batchRank−1>, tail...} for OpArgs::shape / OpArgs::tensor.
inline std::vector<const char*> batchShape(const OpArgs& args, const char* key, size_t batchRank,
                                           std::initializer_list<const char*> tail) {
  if (batchRank > kMaxBatchDims) {
    args.failRange("'" + std::string(key) + "' has " + std::to_string(batchRank) + " leading dimensions; at most " +
                   std::to_string(kMaxBatchDims) + " are supported (reshape it)");
  }
  std::vector<const char*> dims(kBatchDimNames, kBatchDimNames + batchRank);
  dims.insert(dims.end(), tail);
  return dims;
}

// Checks that the tensor read under `key` (null when absent) has rank ≥ minRank, leading dims that
// become B0, B1, ... and trailing dims `tail` (so its batch rank is rank − tail.size()).
inline TensorWrap& checkBatched(OpArgs& args, const char* key, TensorWrap* t, const char* expected,
                                std::initializer_list<const char*> tail, size_t minRank) {
  if (!t) args.fail("'" + std::string(key) + "' is required: a " + expected + " tensor");
  const size_t rank = t->shape().size();
  if (rank < minRank || rank < tail.size()) {
    args.failRange("'" + std::string(key) + "' must have rank ≥ " + std::to_string(minRank) + ", got " + t->describe());
  }
  args.shape(key, *t, batchShape(args, key, rank - tail.size(), tail));
  return *t;
}

// A required tensor of `dtype`, batched as checkBatched says.
inline TensorWrap& batchedTensor(OpArgs& args, const char* key, DType dtype, std::initializer_list<const char*> tail,
                                 size_t minRank) {
  return checkBatched(args, key, args.optionalTensorAnyShape(key, dtype), dtypeName(dtype), tail, minRank);
}

// A required tensor of the op's float type (OpArgs::floatTensor), batched as checkBatched says.
inline TensorWrap& batchedFloatTensor(OpArgs& args, const char* key, std::initializer_list<const char*> tail,
                                      size_t minRank) {
  TensorWrap* t = args.optionalFloatTensorAnyShape(key);
  return checkBatched(args, key, t, dtypeName(args.floatDType()), tail, minRank);
}

// The product of the batch dims bound by batchedTensor (the kernel's row count).
inline int64_t batchRows(const OpArgs& args, size_t batchRank) {
  int64_t rows = 1;
  for (size_t i = 0; i < batchRank; ++i) rows *= args.dim(kBatchDimNames[i]);
  return rows;
}

}  // namespace rlhf::binding
