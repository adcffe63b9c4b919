// crossEntropy / crossEntropyBackward: CUDA against the CPU kernels (float32 and bfloat16) when a
// GPU is present: odd vocabularies (element-wise path), 16-byte packs, ignored targets, a batch of
// only ignored targets, targets at both ends of the vocabulary, large logits, mean and sum, and
// misaligned pointers.
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "../../src/kernels.h"
#include "cuda_harness.h"
#include "harness.h"

#ifdef RLHF_WITH_CUDA
namespace {

using namespace rlhf;

constexpr int32_t kIgnore = -100;

struct CrossEntropyCase {
  int64_t n, vocab;
  float logitScale;
  int ignoreEvery;  // every ignoreEvery-th target is ignored (1: all, 0: none)
  bool sum;
  size_t offset;
};

// Random targets; the first two rows (when there are) aim at ids 0 and V − 1.
std::vector<int32_t> makeTargets(const CrossEntropyCase& c) {
  std::mt19937 gen(41);
  std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(c.vocab - 1));
  std::vector<int32_t> targets(static_cast<size_t>(c.n));
  for (int64_t i = 0; i < c.n; ++i) {
    targets[i] = i == 0 ? 0 : i == 1 ? static_cast<int32_t>(c.vocab - 1) : dist(gen);
    if (c.ignoreEvery > 0 && i % c.ignoreEvery == c.ignoreEvery - 1) targets[i] = kIgnore;
  }
  return targets;
}

// nll, lse and the loss are float32 whatever T (rtol 1e-5), plus lseAtol: the GPU's Σ e^(z − max)
// is float32 in another order than the CPU's, an error relative to the sum, i.e. absolute in log
// space. dLogits has T's tolerance, its atol relative to the largest |dLogits|.
struct Tolerance {
  double lseAtol;
  double dLogitsRtol;
  double dLogitsAtolScale;
};

template <typename T>
void checkCrossEntropy(const CrossEntropyCase& c, Tolerance tol) {
  const double lseAtol = tol.lseAtol;
  using test::OffsetDeviceArray;
  const std::string shape = " [n " + std::to_string(c.n) + ", V " + std::to_string(c.vocab) + ", ignore every " +
                            std::to_string(c.ignoreEvery) + (c.sum ? ", sum" : ", mean") + ", offset " +
                            std::to_string(c.offset) + "]";
  const auto logits = test::storedAs<T>(test::randomNormals(c.n * c.vocab, 42, c.logitScale));
  const auto targets = makeTargets(c);
  const float gradLoss = 0.7f;

  std::vector<float> nll(c.n), lse(c.n), dLogits(c.n * c.vocab);
  double loss = -1.0;
  int64_t count = -1;
  cpu::crossEntropy(
      {logits.data(), targets.data(), c.n, c.vocab, kIgnore, c.sum, nll.data(), lse.data(), &loss, &count});
  cpu::crossEntropyBackward(
      {logits.data(), targets.data(), lse.data(), c.n, c.vocab, kIgnore, c.sum, count, gradLoss, dLogits.data()});

  OffsetDeviceArray<T> gLogits(logits, c.offset), gDLogits(c.n * c.vocab, c.offset);
  test::DeviceArray<int32_t> gTargets(targets);
  test::DeviceArray<float> gNll(c.n), gLse(c.n);
  double gotLoss = std::nan("");
  int64_t gotCount = -1;
  cuda::crossEntropy<T>(
      {gLogits.data(), gTargets.data(), c.n, c.vocab, kIgnore, c.sum, gNll.data(), gLse.data(), &gotLoss, &gotCount});
  if (gotCount != count || !(std::fabs(gotLoss - loss) <= lseAtol + 1e-5 * std::fabs(loss))) {
    test::reportFailure(__FILE__, __LINE__,
                        "loss, count" + shape + ": got " + std::to_string(gotLoss) + ", " + std::to_string(gotCount) +
                            ", want " + std::to_string(loss) + ", " + std::to_string(count));
  }
  CHECK_PARITY("nll" + shape, gNll.download(), nll, 1e-5, lseAtol);
  CHECK_PARITY("lse" + shape, gLse.download(), lse, 1e-5, lseAtol);

  // The backward from the CPU's lse, so that it is compared on its own.
  test::DeviceArray<float> gLseCpu(lse);
  cuda::crossEntropyBackward<T>({gLogits.data(), gTargets.data(), gLseCpu.data(), c.n, c.vocab, kIgnore, c.sum, count,
                                 gradLoss, gDLogits.data()});
  // e^(z − lse) within a few ulps (CUDA's expf vs the CPU's polynomial); p − 1 at the target cancels.
  CHECK_PARITY("dLogits" + shape, gDLogits.download(), dLogits, tol.dLogitsRtol,
               tol.dLogitsAtolScale * test::maxAbs(dLogits));
}

template <typename T>
void checkCrossEntropyCases(Tolerance tol) {
  const CrossEntropyCase cases[] = {
      {7, 259, 1.0f, 3, false, 0},      // odd vocabulary, some ignored, mean
      {7, 259, 1.0f, 3, true, 0},       // the same summed
      {4, 259, 1.0f, 1, false, 0},      // every target ignored: loss 0, count 0
      {1, 1, 1.0f, 0, false, 0},        // one row, one class: nll 0
      {9, 1024, 10.0f, 4, false, 0},    // 16-byte packs, large logits
      {9, 1024, 10.0f, 4, false, 1},    // misaligned
      {64, 32000, 3.0f, 5, false, 0},   // a Llama 2 vocabulary
      {16, 128256, 3.0f, 0, true, 0},   // a Llama 3 vocabulary
  };
  for (const CrossEntropyCase& c : cases) checkCrossEntropy<T>(c, tol);
}

}  // namespace
#endif

TEST(cross_entropy_cuda_matches_cpu_float32) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  rlhf::test::requireCuda();
  checkCrossEntropyCases<float>({1e-5, 1e-5, 1e-6});
#endif
}

TEST(cross_entropy_cuda_matches_cpu_bfloat16) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  rlhf::test::requireCuda();
  checkCrossEntropyCases<rlhf::bf16>({1e-5, 1e-2, 1e-2});
#endif
}
