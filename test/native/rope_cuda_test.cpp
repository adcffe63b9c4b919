// ropeFrequencies / rope / ropeBackward: CUDA against the CPU kernels (float32 and bfloat16) when a
// GPU is present: odd head dims (element-wise path), 16-byte packs, head dims over one shared-memory
// tile of cos/sin (512 pairs), positions with offsets (a KV cache, packed sequences), large
// positions, attention scaling, in-place rotation and misaligned pointers.
#include <cmath>
#include <string>
#include <vector>

#include "../../src/kernels.h"
#include "cuda_harness.h"
#include "harness.h"

#ifdef RLHF_WITH_CUDA
namespace {

using namespace rlhf;

struct RopeCase {
  int64_t batch, seq, heads, headDim;
  int32_t firstPosition;  // row (b, t) sits at position firstPosition + 37·b + t
  float scaling;
  bool inPlace;
  size_t offset;
};

std::vector<float> cpuFrequencies(int64_t headDim, double theta) {
  std::vector<float> invFreq(static_cast<size_t>(headDim / 2));
  RopeFrequencyArgs f{headDim, theta, false, 0, 0, 0, 0, invFreq.data()};
  cpu::ropeFrequencies(f);
  return invFreq;
}

template <typename T>
void checkRope(const RopeCase& c, double rtol, double atolScale) {
  using test::OffsetDeviceArray;
  const std::string shape = " [B " + std::to_string(c.batch) + ", T " + std::to_string(c.seq) + ", H " +
                            std::to_string(c.heads) + ", D " + std::to_string(c.headDim) + ", pos " +
                            std::to_string(c.firstPosition) + (c.inPlace ? ", in place" : "") + ", offset " +
                            std::to_string(c.offset) + "]";
  const int64_t count = c.batch * c.seq * c.heads * c.headDim;
  const auto x = test::storedAs<T>(test::randomNormals(count, 31));
  const auto dOut = test::storedAs<T>(test::randomNormals(count, 32));
  std::vector<int32_t> positions(static_cast<size_t>(c.batch * c.seq));
  for (int64_t b = 0; b < c.batch; ++b) {
    for (int64_t t = 0; t < c.seq; ++t) positions[b * c.seq + t] = c.firstPosition + static_cast<int32_t>(37 * b + t);
  }
  const auto invFreq = cpuFrequencies(c.headDim, 500000.0);

  std::vector<float> out(count), dX(count);
  cpu::rope({x.data(), out.data(), positions.data(), invFreq.data(), c.batch, c.seq, c.heads, c.headDim, c.scaling});
  cpu::ropeBackward(
      {dOut.data(), dX.data(), positions.data(), invFreq.data(), c.batch, c.seq, c.heads, c.headDim, c.scaling});

  test::DeviceArray<int32_t> gPositions(positions);
  test::DeviceArray<float> gInvFreq(invFreq);
  OffsetDeviceArray<T> gX(x, c.offset), gDOut(dOut, c.offset);
  OffsetDeviceArray<T> gOut(count, c.offset), gDX(count, c.offset);
  T* outPtr = c.inPlace ? gX.data() : gOut.data();
  T* dXPtr = c.inPlace ? gDOut.data() : gDX.data();
  cuda::rope<T>({gX.data(), outPtr, gPositions.data(), gInvFreq.data(), c.batch, c.seq, c.heads, c.headDim, c.scaling});
  cuda::ropeBackward<T>(
      {gDOut.data(), dXPtr, gPositions.data(), gInvFreq.data(), c.batch, c.seq, c.heads, c.headDim, c.scaling});
  CHECK_PARITY("out" + shape, (c.inPlace ? gX : gOut).download(), out, rtol, atolScale * test::maxAbs(out));
  CHECK_PARITY("dX" + shape, (c.inPlace ? gDOut : gDX).download(), dX, rtol, atolScale * test::maxAbs(dX));
}

template <typename T>
void checkRopeCases(double rtol, double atolScale) {
  const RopeCase cases[] = {
      {2, 3, 3, 10, 0, 1.0f, false, 0},        // D/2 = 5: element-wise
      {2, 3, 3, 10, 4000, 1.25f, true, 0},     // offset positions, scaling, in place
      {1, 1, 1, 2, 7, 1.0f, false, 0},         // one pair
      {2, 5, 3, 64, 100, 1.0f, false, 0},      // 16-byte packs (32 pairs)
      {2, 5, 3, 64, 100, 1.0f, true, 1},       // misaligned, in place
      {1, 2, 2, 1026, 3, 1.0f, false, 0},      // 513 pairs: two cos/sin tiles, element-wise
      {1, 2, 3, 2048, 9, 1.0f, true, 0},       // 1024 pairs: two tiles of packs, in place
      {1, 4, 2, 128, 131000, 1.0f, false, 0},  // positions past 128k: large angles
      {2, 512, 32, 128, 1000, 1.0f, true, 0},  // a Llama layer's queries, in place
  };
  for (const RopeCase& c : cases) checkRope<T>(c, rtol, atolScale);
}

}  // namespace
#endif

TEST(rope_frequencies_cuda_match_cpu) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  rlhf::test::requireCuda();
  using namespace rlhf;
  // Computed on the host by the CPU code and uploaded: the same bits.
  for (const bool llama3 : {false, true}) {
    for (const int64_t headDim : {int64_t{10}, int64_t{128}}) {
      std::vector<float> want(static_cast<size_t>(headDim / 2));
      RopeFrequencyArgs p{headDim, 500000.0, llama3, 32.0, 1.0, 4.0, 8192.0, want.data()};
      cpu::ropeFrequencies(p);
      test::DeviceArray<float> got(want.size());
      p.invFreq = got.data();
      cuda::ropeFrequencies(p);
      CHECK_PARITY(std::string("invFreq") + (llama3 ? " llama3" : " default") + " D " + std::to_string(headDim),
                   got.download(), want, 0.0, 0.0);
    }
  }
#endif
}

TEST(rope_cuda_matches_cpu_float32) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  rlhf::test::requireCuda();
  // Same angles (one float32 product); CUDA's sincosf is within 2 ulp where glibc's cosf/sinf are
  // within 1, and c·x1 − s·x2 can cancel: the difference is relative to the result's scale.
  checkRopeCases<float>(1e-5, 1e-6);
#endif
}

TEST(rope_cuda_matches_cpu_bfloat16) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  rlhf::test::requireCuda();
  checkRopeCases<rlhf::bf16>(1e-2, 1e-2);
#endif
}
