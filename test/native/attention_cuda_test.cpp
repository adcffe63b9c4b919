// attention / attentionBackward: CUDA against the CPU kernel (the reference), float32 and bfloat16,
// when a GPU is present. Every case compares out, lse, dQ, dK and dV, and checks exactly what must
// be exact: a query that sees no key has lse = −inf, out = 0 and dQ = 0; a masked key has dK = dV
// = 0. The shapes exercise every kernel variant: bf16 tensor cores at D ≤ 64 and D ≤ 128 (D = 5 and
// D = 32 padded), the SIMT kernels for float32 at every D and for bf16 at D > 128 (D = 200: dot
// products in chunks, two output slices), partial tiles, GQA groups, the KV-cache offset (T < S),
// left padding with fully masked query rows and batch rows, non-causal attention with T > S.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "../../src/kernels.h"
#include "cuda_harness.h"
#include "harness.h"

#ifdef RLHF_WITH_CUDA
namespace {

using rlhf::bf16;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Case {
  const char* name;
  int64_t batch, seqQ, seqK, headsQ, headsKv, dim;
  bool causal;
  std::vector<int64_t> leftPad;  // masked leading keys per batch row; empty: no mask
  bool expectEmptyRows;          // the mask leaves some query with no visible key
};

std::vector<Case> cases() {
  return {
      {"gqa_B2_T7_Hq3_Hkv1_D5", 2, 7, 7, 3, 1, 5, true, {}, false},
      {"decode_T1_S37", 1, 1, 37, 4, 2, 64, true, {}, false},
      {"kv_cache_T19_S53_padded", 2, 19, 53, 4, 2, 32, true, {0, 40}, true},
      {"left_padding_T23_D64", 3, 23, 23, 2, 1, 64, true, {0, 5, 23}, true},
      {"non_causal_T9_S6_D1", 2, 9, 6, 2, 2, 1, false, {0, 2}, false},
      {"non_causal_T5_S70_D32", 1, 5, 70, 6, 3, 32, false, {}, false},
      {"tiles_T300_D128", 1, 300, 300, 2, 1, 128, true, {0}, false},
      {"wide_head_T45_D200", 1, 45, 45, 2, 1, 200, true, {3}, true},
      {"realistic_B2_T512_Hq8_Hkv2_D64", 2, 512, 512, 8, 2, 64, true, {0, 100}, true},
  };
}

std::vector<int32_t> leftPaddingMask(const Case& c) {
  std::vector<int32_t> mask(c.batch * c.seqK);
  for (int64_t b = 0; b < c.batch; ++b) {
    for (int64_t j = 0; j < c.seqK; ++j) mask[b * c.seqK + j] = j >= c.leftPad[b] ? 1 : 0;
  }
  return mask;
}

double maxAbs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}

// |got − want| ≤ atolScale·max|want| + rtol·|want| everywhere.
void checkTensor(const std::string& label, const std::vector<float>& got, const std::vector<float>& want, double rtol,
                 double atolScale) {
  CHECK_PARITY(label, got, want, rtol, atolScale * std::max(maxAbs(want), 1e-30));
}

template <typename T>
void checkAttentionParity(const Case& c, uint32_t seed) {
  using namespace rlhf;
  using test::DeviceArray;
  constexpr bool kBf16 = std::is_same_v<T, bf16>;
  // float32: out and the gradients are sums over up to S = 512 keys (and T·group = 2048 queries for
  // dK, dV) taken in a different order and blocking than the CPU's sgemm, with exp2 of base-2
  // scores instead of exp, and online rescaling by α per key tile: each rounding is ≤ 6e-8
  // relative to a term, and the terms' magnitude is bounded by the output's largest element, so a
  // bound of 1e-5 of the tensor's largest magnitude holds with a wide margin (the relative part,
  // 1e-5, covers elements far from 0). lse is a log of a sum of positive terms: 1e-5 relative.
  // bfloat16: inputs, P (and dS) in the products and the outputs are rounded to bf16 (2^-9
  // relative), so 1e-2 of the tensor's largest magnitude plus 1e-2 relative.
  const double rtol = kBf16 ? 1e-2 : 1e-5;
  const double atolScale = kBf16 ? 1e-2 : 1e-5;
  const std::string tag = std::string(c.name) + (kBf16 ? " bf16 " : " f32 ");

  const int64_t qCount = c.batch * c.seqQ * c.headsQ * c.dim, kCount = c.batch * c.seqK * c.headsKv * c.dim;
  const int64_t statCount = c.batch * c.headsQ * c.seqQ;
  auto q = test::randomNormals(qCount, seed), k = test::randomNormals(kCount, seed + 1);
  auto v = test::randomNormals(kCount, seed + 2), dOut = test::randomNormals(qCount, seed + 3);
  if constexpr (kBf16) {
    q = test::roundToBf16(q);
    k = test::roundToBf16(k);
    v = test::roundToBf16(v);
    dOut = test::roundToBf16(dOut);
  }
  const std::vector<int32_t> mask = c.leftPad.empty() ? std::vector<int32_t>{} : leftPaddingMask(c);
  const int32_t* maskHost = mask.empty() ? nullptr : mask.data();
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.dim));

  // CPU reference.
  std::vector<float> out(qCount), lse(statCount), dQ(qCount), dK(kCount), dV(kCount);
  cpu::attention({q.data(), k.data(), v.data(), maskHost, out.data(), lse.data(), c.batch, c.seqQ, c.seqK, c.headsQ,
                  c.headsKv, c.dim, scale, c.causal});
  // Both backwards read the same saved forward: the CPU's out (as stored in T) and lse.
  const std::vector<float> outStored = kBf16 ? test::roundToBf16(out) : out;
  cpu::attentionBackward({q.data(), k.data(), v.data(), maskHost, outStored.data(), lse.data(), dOut.data(), dQ.data(),
                          dK.data(), dV.data(), c.batch, c.seqQ, c.seqK, c.headsQ, c.headsKv, c.dim, scale, c.causal});

  // CUDA.
  DeviceArray<T> dq(q), dk(k), dv(v), ddOut(dOut), dOutStored(outStored), dout(qCount), ddQ(qCount), ddK(kCount),
      ddV(kCount);
  DeviceArray<float> dlse(statCount), dlseSaved(lse);
  DeviceArray<int32_t> dmask(mask.empty() ? std::vector<int32_t>{0} : mask);
  const int32_t* maskDevice = mask.empty() ? nullptr : dmask.data();
  cuda::attention<T>({dq.data(), dk.data(), dv.data(), maskDevice, dout.data(), dlse.data(), c.batch, c.seqQ, c.seqK,
                      c.headsQ, c.headsKv, c.dim, scale, c.causal});
  cuda::attentionBackward<T>({dq.data(), dk.data(), dv.data(), maskDevice, dOutStored.data(), dlseSaved.data(),
                              ddOut.data(), ddQ.data(), ddK.data(), ddV.data(), c.batch, c.seqQ, c.seqK, c.headsQ,
                              c.headsKv, c.dim, scale, c.causal});
  const auto gotOut = dout.download(), gotLse = dlse.download();
  const auto gotDQ = ddQ.download(), gotDK = ddK.download(), gotDV = ddV.download();
  checkTensor(tag + "out", gotOut, out, rtol, atolScale);
  checkTensor(tag + "lse", gotLse, lse, kBf16 ? 1e-2 : 1e-5, kBf16 ? 1e-2 : 1e-6);
  checkTensor(tag + "dQ", gotDQ, dQ, rtol, atolScale);
  checkTensor(tag + "dK", gotDK, dK, rtol, atolScale);
  checkTensor(tag + "dV", gotDV, dV, rtol, atolScale);

  // Exact: queries that see no key (the CPU's lse = −inf) and keys no query sees (masked).
  int64_t emptyRows = 0, inexact = 0;
  for (int64_t b = 0; b < c.batch; ++b) {
    for (int64_t h = 0; h < c.headsQ; ++h) {
      for (int64_t t = 0; t < c.seqQ; ++t) {
        const int64_t s = (b * c.headsQ + h) * c.seqQ + t;
        if (lse[s] != kNegInf) continue;
        ++emptyRows;
        inexact += gotLse[s] != kNegInf;
        for (int64_t d = 0; d < c.dim; ++d) {
          const int64_t i = ((b * c.seqQ + t) * c.headsQ + h) * c.dim + d;
          inexact += gotOut[i] != 0.0f || gotDQ[i] != 0.0f;
        }
      }
    }
  }
  for (int64_t b = 0; b < c.batch && !mask.empty(); ++b) {
    for (int64_t j = 0; j < c.seqK; ++j) {
      if (mask[b * c.seqK + j] != 0) continue;
      for (int64_t i = (b * c.seqK + j) * c.headsKv * c.dim; i < (b * c.seqK + j + 1) * c.headsKv * c.dim; ++i) {
        inexact += gotDK[i] != 0.0f || gotDV[i] != 0.0f;
      }
    }
  }
  if (inexact != 0) {
    test::reportFailure(__FILE__, __LINE__,
                        tag + std::to_string(inexact) + " elements of empty query rows or masked keys are not exact");
  }
  CHECK((emptyRows > 0) == c.expectEmptyRows);
}

template <typename T>
void checkAllCases() {
  uint32_t seed = 100;
  for (const Case& c : cases()) {
    checkAttentionParity<T>(c, seed);
    seed += 10;
  }
}

}  // namespace
#endif

TEST(attention_cuda_matches_cpu_float32) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  rlhf::test::requireCuda();
  checkAllCases<float>();
#endif
}

TEST(attention_cuda_matches_cpu_bfloat16) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  rlhf::test::requireCuda();
  checkAllCases<rlhf::bf16>();
#endif
}
