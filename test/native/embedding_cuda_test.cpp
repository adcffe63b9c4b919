// embedding / embeddingBackward: CUDA against the CPU kernels (float32 and bfloat16) when a GPU is
// present.
#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "../../src/kernels.h"
#include "cuda_harness.h"
#include "harness.h"

#ifdef RLHF_WITH_CUDA
namespace {

using namespace rlhf;

// Ids in [0, vocab), the first one repeated three times more (at the end) so that the scatter-add
// sums repeated ids whatever the draw.
std::vector<int32_t> idsWithRepeats(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = dist(gen);
  for (int64_t i = std::max<int64_t>(1, n - 3); i < n; ++i) ids[i] = ids[0];
  return ids;
}

// out = table[ids] and dTable += scatter(dOut) on both backends. `offset` shifts the float tensors'
// device pointers by that many elements (1: misaligned, element-wise path).
template <typename T>
void checkEmbedding(int64_t n, int64_t vocab, int64_t dim, size_t offset) {
  using test::OffsetDeviceArray;
  const auto table = test::storedAs<T>(test::randomNormals(vocab * dim, 11));
  const auto ids = idsWithRepeats(n, vocab, 12);
  const auto dOut = test::storedAs<T>(test::randomNormals(n * dim, 13));
  const auto dTable0 = test::randomNormals(vocab * dim, 14);  // float32, accumulated into
  std::vector<float> out(n * dim), dTable = dTable0;
  cpu::embedding({table.data(), ids.data(), out.data(), n, vocab, dim});
  cpu::embeddingBackward({dOut.data(), ids.data(), dTable.data(), n, vocab, dim});

  OffsetDeviceArray<T> gTable(table, offset), gOut(n * dim, offset), gDOut(dOut, offset);
  test::DeviceArray<int32_t> gIds(ids);
  OffsetDeviceArray<float> gDTable(dTable0, offset);
  cuda::embedding<T>({gTable.data(), gIds.data(), gOut.data(), n, vocab, dim});
  cuda::embeddingBackward<T>({gDOut.data(), gIds.data(), gDTable.data(), n, vocab, dim});
  const std::string shape = " [n " + std::to_string(n) + ", V " + std::to_string(vocab) + ", D " + std::to_string(dim) +
                            ", offset " + std::to_string(offset) + "]";
  // A gather copies bits: exact.
  CHECK_PARITY("out" + shape, gOut.download(), out, 0.0, 0.0);
  // Repeated ids add in an order the GPU's atomics choose (the CPU adds in token order): float32
  // sums of a few O(1) terms, equal up to a few ulps.
  CHECK_PARITY("dTable" + shape, gDTable.download(), dTable, 1e-5, 1e-6 * test::maxAbs(dTable));
}

template <typename T>
void checkEmbeddingShapes() {
  checkEmbedding<T>(7, 259, 5, 0);       // odd dim: element-wise path
  checkEmbedding<T>(64, 259, 24, 0);     // 16-byte packs (24 floats, 24 bf16)
  checkEmbedding<T>(64, 259, 24, 1);     // misaligned pointers
  checkEmbedding<T>(1, 1, 3, 0);         // one token, one row
  checkEmbedding<T>(2048, 8192, 2048, 0);  // a 1B model's hidden size
}

}  // namespace
#endif

TEST(embedding_cuda_matches_cpu_float32) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  rlhf::test::requireCuda();
  checkEmbeddingShapes<float>();
#endif
}

TEST(embedding_cuda_matches_cpu_bfloat16) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  rlhf::test::requireCuda();
  checkEmbeddingShapes<rlhf::bf16>();
#endif
}
