// logprobGather / logprobGatherBackward: the CUDA kernels against the CPU kernel (the reference),
// float32 and bfloat16, every output and both gradients. Skipped without a GPU.
//
// Each case runs the CPU forward on float inputs (rounded to bf16 for the bf16 run), the CUDA
// forward on the same values, and compares logp, lse, entropy, logitMean and argmax; then three
// backward variants (dEntropy or not, dHidden overwritten or accumulated, dWeight or not) fed with
// the CPU forward's lse and entropy on both sides, comparing dHidden and dWeight. Outputs start
// poisoned with NaN, so an element the GPU fails to write fails the comparison.
//
// Tolerances: |got − want| ≤ tol·|want| + tol·scale per output, scale = max |want| for the gradients
// (whose priors are kept small, so that the gradient dominates what is compared) and
// max(1, max |want|) for the per-token statistics.
//   float32, tol = 1e-5: the GPU sums the D-term dot products and the V-term softmax sums in other
//     orders than the CPU (tiles of 128 columns, vocabulary splits, split-K partial buffers), so
//     each logit carries a few ulps of |z| of difference, and the statistics and gradients inherit
//     it relative to their own scale (~1e-6 for |z| ≲ 30). 1e-4 for the large-logit case: with
//     |z| ~ 100 one ulp is 7.6e-6, which moves e^(z − lse) by as much relatively.
//   bfloat16 statistics (float32 outputs from bf16 inputs), tol = 1e-3: the products are exact in
//     float32 and only the tensor cores' accumulation order differs, a few ulps of |z|.
//   bfloat16 gradients, tol = 1e-2: dHidden is rounded to bf16 (2^-9 relative) and the logit
//     gradients go through bf16 between the recompute and the two GEMMs.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "../../src/kernels.h"
#include "cuda_harness.h"
#include "harness.h"

#ifdef RLHF_WITH_CUDA
namespace {

using namespace rlhf;
using test::DeviceArray;

constexpr int32_t kIgnore = -100;

struct Case {
  const char* name;
  int64_t n, dim, vocab;
  double ignoredFraction;
  float scale;  // standard deviation of the hidden and weight entries
  float temperature;
  double f32Tol;
};

const Case kCases[] = {
    {"N=1, V=259, D=3", 1, 3, 259, 0.0, 1.0f, 1.0f, 1e-5},
    {"N=13 with ignored targets, V=259, D=5", 13, 5, 259, 0.4, 1.0f, 1.0f, 1e-5},
    {"all targets ignored", 5, 4, 259, 1.0, 1.0f, 1.0f, 1e-5},
    {"temperature 0.7, N=37, V=1000, D=40", 37, 40, 1000, 0.3, 0.5f, 0.7f, 1e-5},
    {"large logits (|z| ~ 100), N=9, V=700, D=32, T=0.5", 9, 32, 700, 0.2, 2.0f, 0.5f, 1e-4},
    {"three token tiles, N=300, V=515, D=24", 300, 24, 515, 0.1, 0.5f, 1.0f, 1e-5},
    {"small N, large V (vocabulary split): N=16, V=32000, D=64", 16, 64, 32000, 0.0, 0.4f, 1.0f, 1e-5},
    {"realistic: N=512, V=32000, D=256", 512, 256, 32000, 0.25, 0.25f, 1.0f, 1e-5},
};

struct Problem {
  int64_t n, dim, vocab;
  float invTemperature;
  std::vector<float> hidden, weight;  // already bf16-rounded for a bf16 run
  std::vector<int32_t> targets;
};

template <typename T>
std::vector<float> asStored(std::vector<float> v) {
  if constexpr (std::is_same_v<T, bf16>) return test::roundToBf16(v);
  else return v;
}

template <typename T>
Problem makeProblem(const Case& c, uint32_t seed) {
  Problem p{c.n, c.dim, c.vocab, 1.0f / c.temperature, {}, {}, {}};
  p.hidden = asStored<T>(test::randomNormals(c.n * c.dim, seed, c.scale));
  p.weight = asStored<T>(test::randomNormals(c.vocab * c.dim, seed + 1, c.scale));
  std::mt19937 gen(seed + 2);
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(c.vocab - 1));
  std::uniform_real_distribution<double> u(0.0, 1.0);
  p.targets.resize(c.n);
  for (auto& t : p.targets) t = u(gen) < c.ignoredFraction ? kIgnore : id(gen);
  return p;
}

struct Forward {
  std::vector<float> logp, lse, entropy, logitMean;
  std::vector<int32_t> argmax;
};

Forward cpuForward(const Problem& p) {
  Forward f{std::vector<float>(p.n), std::vector<float>(p.n), std::vector<float>(p.n), std::vector<float>(p.n),
            std::vector<int32_t>(p.n)};
  cpu::logprobGather(LogprobGatherArgs{p.hidden.data(), p.weight.data(), p.targets.data(), p.n, p.dim, p.vocab,
                                       p.invTemperature, kIgnore, 256, f.logp.data(), f.lse.data(), f.entropy.data(),
                                       f.logitMean.data(), f.argmax.data()});
  return f;
}

template <typename T>
Forward gpuForward(const Problem& p) {
  DeviceArray<T> hidden(p.hidden), weight(p.weight);
  DeviceArray<int32_t> targets(p.targets), argmax(p.n);
  DeviceArray<float> logp(p.n), lse(p.n), entropy(p.n), logitMean(p.n);
  cuda::logprobGather<T>(LogprobGatherArgsT<T>{hidden.data(), weight.data(), targets.data(), p.n, p.dim, p.vocab,
                                               p.invTemperature, kIgnore, 256, logp.data(), lse.data(), entropy.data(),
                                               logitMean.data(), argmax.data()});
  Forward f{logp.download(), lse.download(), entropy.download(), logitMean.download(), {}};
  for (float a : argmax.download()) f.argmax.push_back(static_cast<int32_t>(a));
  return f;
}

// |got − want| ≤ tol·|want| + tol·max(minScale, max |want|).
void checkClose(const std::string& label, const std::vector<float>& got, const std::vector<float>& want, double tol,
                double minScale) {
  double scale = minScale;
  for (float x : want) scale = std::max(scale, static_cast<double>(std::fabs(x)));
  CHECK_PARITY(label, got, want, tol, tol * scale);
}

// z[i][v] in float64 from the (stored) inputs.
double logit(const Problem& p, int64_t i, int64_t v) {
  double s = 0.0;
  for (int64_t d = 0; d < p.dim; ++d) s += static_cast<double>(p.hidden[i * p.dim + d]) * p.weight[v * p.dim + d];
  return s * p.invTemperature;
}

// The GPU's argmax must be the CPU's, or (where the two rounded logits differ in the last bits) a
// column whose exact logit is within `tol`·max(1, |z|) of the CPU's choice.
void checkArgmax(const std::string& label, const Problem& p, const std::vector<int32_t>& got,
                 const std::vector<int32_t>& want, double tol) {
  int reported = 0;
  for (int64_t i = 0; i < p.n; ++i) {
    bool ok = got[i] == want[i];
    if (!ok && p.targets[i] != kIgnore && got[i] >= 0 && got[i] < p.vocab) {
      const double zWant = logit(p, i, want[i]), zGot = logit(p, i, got[i]);
      ok = std::fabs(zGot - zWant) <= tol * std::max(1.0, std::fabs(zWant));
    }
    if (!ok && reported++ < 5) {
      test::reportFailure(__FILE__, __LINE__,
                          label + "[" + std::to_string(i) + "]: got " + std::to_string(got[i]) + ", want " +
                              std::to_string(want[i]));
    }
  }
}

struct Variant {
  const char* name;
  bool entropyTerm;  // pass dEntropy (and the forward's entropy)
  bool accumulate;   // accumulateDHidden into a prior dHidden
  bool dWeight;      // accumulate dWeight into a prior
};
const Variant kVariants[] = {
    {"dEntropy, accumulated dHidden, dWeight", true, true, true},
    {"dLogp only, overwritten dHidden, no dWeight", false, false, false},
    {"dEntropy, overwritten dHidden, dWeight", true, false, true},
};

template <typename T>
void checkBackward(const Problem& p, const Forward& fwd, const Variant& v, double tol, const std::string& label,
                   uint32_t seed) {
  const auto dLogp = test::randomNormals(p.n, seed);
  const auto dEntropy = test::randomNormals(p.n, seed + 1);
  const auto priorDH = asStored<T>(test::randomNormals(p.n * p.dim, seed + 2, 0.05f));
  const auto priorDW = test::randomNormals(p.vocab * p.dim, seed + 3, 0.05f);

  std::vector<float> wantDH = priorDH, wantDW = priorDW;
  cpu::logprobGatherBackward(LogprobGatherBackwardArgs{
      p.hidden.data(), p.weight.data(), p.targets.data(), fwd.lse.data(),
      v.entropyTerm ? fwd.entropy.data() : nullptr, dLogp.data(), v.entropyTerm ? dEntropy.data() : nullptr,
      wantDH.data(), v.dWeight ? wantDW.data() : nullptr, p.n, p.dim, p.vocab, p.invTemperature, kIgnore, 256,
      v.accumulate});

  DeviceArray<T> hidden(p.hidden), weight(p.weight), dHidden(p.n * p.dim);
  DeviceArray<int32_t> targets(p.targets);
  DeviceArray<float> lse(fwd.lse), entropy(fwd.entropy), gLogp(dLogp), gEntropy(dEntropy), dWeight(priorDW);
  if (v.accumulate) dHidden.upload(priorDH);  // otherwise it stays poisoned: every element must be written
  cuda::logprobGatherBackward<T>(LogprobGatherBackwardArgsT<T>{
      hidden.data(), weight.data(), targets.data(), lse.data(), v.entropyTerm ? entropy.data() : nullptr,
      gLogp.data(), v.entropyTerm ? gEntropy.data() : nullptr, dHidden.data(), v.dWeight ? dWeight.data() : nullptr,
      p.n, p.dim, p.vocab, p.invTemperature, kIgnore, 256, v.accumulate});
  checkClose(label + " dHidden (" + v.name + ")", dHidden.download(), wantDH, tol, 0.0);
  // Without dWeight the buffer must come back untouched.
  checkClose(label + " dWeight (" + v.name + ")", dWeight.download(), wantDW, v.dWeight ? tol : 0.0, 0.0);
}

template <typename T>
void checkParityCases() {
  constexpr bool kBf16 = std::is_same_v<T, bf16>;
  uint32_t seed = kBf16 ? 1000 : 100;
  for (const Case& c : kCases) {
    const std::string label = std::string(kBf16 ? "bf16 " : "f32 ") + c.name;
    const Problem p = makeProblem<T>(c, seed += 10);
    const Forward want = cpuForward(p);
    const Forward got = gpuForward<T>(p);
    const double statTol = kBf16 ? 1e-3 : c.f32Tol;
    checkClose(label + " logp", got.logp, want.logp, statTol, 1.0);
    checkClose(label + " lse", got.lse, want.lse, statTol, 1.0);
    checkClose(label + " entropy", got.entropy, want.entropy, statTol, 1.0);
    checkClose(label + " logitMean", got.logitMean, want.logitMean, statTol, 1.0);
    checkArgmax(label + " argmax", p, got.argmax, want.argmax, statTol);
    for (const Variant& v : kVariants) checkBackward<T>(p, want, v, kBf16 ? 1e-2 : c.f32Tol, label, seed + 5);
  }
}

// Tied maxima: columns holding identical weight rows (4, 0, ..., 0) give bit-identical logits
// 4·h[0] ≥ 16 that beat every random column (|z| ≲ 10). The tie sets span one thread's columns,
// the two threads of a float32 row, several tiles and several vocabulary splits (N = 3, V = 20000:
// one tile per split); argmax must be the first tied column on the CPU and on the GPU.
template <typename T>
void checkArgmaxTies() {
  const int64_t n = 3, dim = 8, vocab = 20000;
  const std::vector<std::vector<int64_t>> tieSets = {{37, 40, 100, 200, 5000, 15000, 19999},
                                                     {19999, 12400, 12346, 12345}};
  for (const auto& ties : tieSets) {
    Problem p{n, dim, vocab, 1.0f, test::randomNormals(n * dim, 77), test::randomNormals(vocab * dim, 78, 0.3f),
              {5, kIgnore, 9}};
    for (int64_t i = 0; i < n; ++i) p.hidden[i * dim] = 4.0f + std::fabs(p.hidden[i * dim]);
    for (int64_t v : ties) {
      std::fill(p.weight.begin() + v * dim, p.weight.begin() + (v + 1) * dim, 0.0f);
      p.weight[v * dim] = 4.0f;
    }
    p.hidden = asStored<T>(p.hidden);
    p.weight = asStored<T>(p.weight);
    const int32_t first = static_cast<int32_t>(*std::min_element(ties.begin(), ties.end()));
    const std::vector<int32_t> expected = {first, -1, first};
    CHECK(cpuForward(p).argmax == expected);
    CHECK(gpuForward<T>(p).argmax == expected);
  }
}

}  // namespace
#endif

TEST(logprob_gather_cuda_matches_cpu_float32) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  rlhf::test::requireCuda();
  checkParityCases<float>();
#endif
}

TEST(logprob_gather_cuda_matches_cpu_bfloat16) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  rlhf::test::requireCuda();
  checkParityCases<rlhf::bf16>();
#endif
}

TEST(logprob_gather_cuda_argmax_ties_take_the_first_index) {
#ifndef RLHF_WITH_CUDA
  SKIP("built without CUDA");
#else
  rlhf::test::requireCuda();
  checkArgmaxTies<float>();
  checkArgmaxTies<rlhf::bf16>();
#endif
}
