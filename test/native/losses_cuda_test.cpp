// The preference and RL losses: CUDA against the CPU kernels (the reference) on the same random
// inputs, when a GPU is present. The loss, every gradient element and every metric are compared:
// gradients at float32 rtol 1e-5 (both backends compute in float64 and round once), scalars at
// rtol 1e-5 with atol 1e-9 (the batch sums add the same float64 terms in another order).
// Outputs are poisoned (NaN) first, so an element or metric a kernel fails to write fails.
//
// DPO: every loss type under every f-divergence (alpha-divergence at α = 0.5, the α = 1 log limit,
// and α = 2 with its exponent clamp), with and without label smoothing; weighted lists with a
// repeated type and sft; WPO pair weights; empty completions (length 0); 1, 37, 64, 4097 pairs.
// KTO: both loss types, mixed rows, only desirable rows. ORPO. CPO: every type, with and without
// AlphaPO's alpha and label smoothing, with and without the NLL term. Pair counts up to 9001 (more
// blocks than the final reduction's warp has lanes). GRPO: every loss type × token / sequence
// level × on- / off-policy × with / without KL × with / without δ, with a row whose mask is empty,
// on [3, 7], [9, 33], [1, 5], an all-empty [1, 5], [64, 1029] and [8, 4096]; clip fractions with
// advantages of one sign over 70 rows. And run-to-run
// determinism (bitwise) of DPO and GRPO.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "../../src/kernels.h"
#include "cuda_harness.h"
#include "harness.h"

#ifdef RLHF_WITH_CUDA
namespace {

using namespace rlhf;
using test::DeviceArray;

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

// Float64 scalars: equal (NaN only against NaN), or |got − want| ≤ atol + rtol·|want|.
void checkScalar(const char* file, int line, const std::string& label, double got, double want) {
  constexpr double rtol = 1e-5, atol = 1e-9;
  if (got == want || (std::isnan(got) && std::isnan(want))) return;
  if (!(std::fabs(got - want) <= atol + rtol * std::fabs(want))) {
    test::reportFailure(file, line, label + ": got " + std::to_string(got) + ", want " + std::to_string(want));
  }
}
#define CHECK_SCALAR(label, got, want) checkScalar(__FILE__, __LINE__, label, got, want)

// Gradients: rtol 1e-5, and an atol of 1e-9 of the largest magnitude, for elements that cancel to
// near zero.
void checkGradient(const char* file, int line, const std::string& label, const std::vector<float>& got,
                   const std::vector<float>& want) {
  double largest = 0.0;
  for (float w : want) largest = std::fmax(largest, std::fabs(static_cast<double>(w)));
  test::checkParity(file, line, label, got, want, 1e-5, 1e-9 * largest);
}
#define CHECK_GRADIENT(label, got, want) checkGradient(__FILE__, __LINE__, label, got, want)

void checkPairMetrics(const char* file, int line, const std::string& label, const PairMetrics& got,
                      const PairMetrics& want) {
  checkScalar(file, line, label + " rewards/chosen", got.rewardsChosen, want.rewardsChosen);
  checkScalar(file, line, label + " rewards/rejected", got.rewardsRejected, want.rewardsRejected);
  checkScalar(file, line, label + " rewards/accuracies", got.rewardsAccuracies, want.rewardsAccuracies);
  checkScalar(file, line, label + " rewards/margins", got.rewardsMargins, want.rewardsMargins);
  checkScalar(file, line, label + " logps/chosen", got.logpsChosen, want.logpsChosen);
  checkScalar(file, line, label + " logps/rejected", got.logpsRejected, want.logpsRejected);
}
#define CHECK_PAIR_METRICS(label, got, want) checkPairMetrics(__FILE__, __LINE__, label, got, want)

PairMetrics nanPairMetrics() { return {kNan, kNan, kNan, kNan, kNan, kNan}; }

std::vector<float> uniform(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// Token counts in [0, 60], every 9th one 0 (an empty completion).
std::vector<float> lengths(size_t n, uint32_t seed) {
  std::vector<float> v = uniform(n, seed, 0.0f, 61.0f);
  for (size_t i = 0; i < n; ++i) v[i] = i % 9 == 4 ? 0.0f : std::floor(v[i]);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Pairwise inputs: sums of completion log-probs (< 0), lengths, WPO weights.

struct PairData {
  int64_t pairs;
  std::vector<float> policyChosen, policyRejected, refChosen, refRejected;
  std::vector<float> chosenLengths, rejectedLengths, pairWeights;
};

// DPO's: reference sums in [−400, −1], policy = reference + a log-ratio of a few nats, every 5th
// one ±40 nats (the tails of logσ), and pair 3's chosen log-ratio 90 (past the alpha-divergence
// exponent clamp at α = 2).
PairData dpoPairs(int64_t pairs, uint32_t seed) {
  PairData d{pairs, {}, {}, {}, {}, {}, {}, {}};
  d.refChosen = uniform(pairs, seed, -400.0f, -1.0f);
  d.refRejected = uniform(pairs, seed + 1, -400.0f, -1.0f);
  const std::vector<float> uc = test::randomNormals(pairs, seed + 2, 3.0f);
  const std::vector<float> ur = test::randomNormals(pairs, seed + 3, 3.0f);
  d.policyChosen.resize(pairs);
  d.policyRejected.resize(pairs);
  for (int64_t i = 0; i < pairs; ++i) {
    const float far = i % 5 == 1 ? 40.0f : i % 5 == 2 ? -40.0f : 0.0f;
    d.policyChosen[i] = d.refChosen[i] + uc[i] + far;
    d.policyRejected[i] = d.refRejected[i] + ur[i] - far;
  }
  if (pairs > 3) d.policyChosen[3] = d.refChosen[3] + 90.0f;
  d.chosenLengths = lengths(pairs, seed + 4);
  d.rejectedLengths = lengths(pairs, seed + 5);
  d.pairWeights = uniform(pairs, seed + 6, 0.0f, 2.0f);
  d.pairWeights[0] = 0.0f;
  return d;
}

// Reference-free losses' (ORPO, CPO): sums in [lo, −0.001]; a few small sums over long completions
// put the averages near 0, where ORPO's log(1 − e^a) cancels.
PairData freePairs(int64_t pairs, uint32_t seed, float lo) {
  PairData d{pairs, {}, {}, {}, {}, {}, {}, {}};
  d.policyChosen = uniform(pairs, seed, lo, -0.001f);
  d.policyRejected = uniform(pairs, seed + 1, lo, -0.001f);
  d.chosenLengths = lengths(pairs, seed + 2);
  d.rejectedLengths = lengths(pairs, seed + 3);
  for (int64_t i = 0; i < pairs; i += 7) {
    d.policyChosen[i] = -0.003f;
    d.chosenLengths[i] = 50.0f;
  }
  return d;
}

// The policy sums and lengths on the device (DPO adds its reference sums and pair weights).
struct DevicePairs {
  explicit DevicePairs(const PairData& d)
      : policyChosen(d.policyChosen), policyRejected(d.policyRejected), chosenLengths(d.chosenLengths),
        rejectedLengths(d.rejectedLengths) {}
  DeviceArray<float> policyChosen, policyRejected, chosenLengths, rejectedLengths;
};

// The device pointer standing for host pointer `host` (null stays null).
float* onDevice(const float* host, DeviceArray<float>& device) { return host ? device.data() : nullptr; }

// ---------------------------------------------------------------------------------------------
// DPO

struct DpoCase {
  std::vector<DpoLossType> types;
  std::vector<float> weights;
  FDivergence fDivergence = FDivergence::ReverseKl;
  float fAlphaCoef = 0.5f;
  float labelSmoothing = 0.0f;
  bool withLengths = true;
  bool withPairWeights = false;
};

struct DpoResult {
  double loss;
  std::vector<float> dChosen, dRejected;
  PairMetrics metrics;
};

DpoLossArgs dpoArgs(const PairData& d, const DpoCase& c) {
  return {d.pairs,
          d.policyChosen.data(),
          d.policyRejected.data(),
          d.refChosen.data(),
          d.refRejected.data(),
          c.withLengths ? d.chosenLengths.data() : nullptr,
          c.withLengths ? d.rejectedLengths.data() : nullptr,
          c.withPairWeights ? d.pairWeights.data() : nullptr,
          c.types.data(),
          c.weights.data(),
          static_cast<int32_t>(c.types.size()),
          0.1f,
          c.labelSmoothing,
          c.fAlphaCoef,
          0.05f,
          c.fDivergence,
          nullptr,
          nullptr,
          nullptr,
          nullptr};
}

DpoResult cpuDpo(const PairData& d, const DpoCase& c) {
  DpoResult r{0.0, std::vector<float>(d.pairs), std::vector<float>(d.pairs), {}};
  DpoLossArgs a = dpoArgs(d, c);
  a.loss = &r.loss;
  a.dPolicyChosen = r.dChosen.data();
  a.dPolicyRejected = r.dRejected.data();
  a.metrics = &r.metrics;
  cpu::dpoLoss(a);
  return r;
}

DpoResult cudaDpo(const PairData& d, const DpoCase& c) {
  DevicePairs g(d);
  DeviceArray<float> refChosen(d.refChosen), refRejected(d.refRejected), pairWeights(d.pairWeights);
  DeviceArray<float> dChosen(d.pairs), dRejected(d.pairs);
  DpoResult r{kNan, {}, {}, nanPairMetrics()};
  DpoLossArgs a = dpoArgs(d, c);
  a.policyChosen = g.policyChosen.data();
  a.policyRejected = g.policyRejected.data();
  a.refChosen = refChosen.data();
  a.refRejected = refRejected.data();
  a.chosenLengths = onDevice(a.chosenLengths, g.chosenLengths);
  a.rejectedLengths = onDevice(a.rejectedLengths, g.rejectedLengths);
  a.pairWeights = onDevice(a.pairWeights, pairWeights);
  a.loss = &r.loss;
  a.dPolicyChosen = dChosen.data();
  a.dPolicyRejected = dRejected.data();
  a.metrics = &r.metrics;
  cuda::dpoLoss(a);
  r.dChosen = dChosen.download();
  r.dRejected = dRejected.download();
  return r;
}

void checkDpo(const std::string& label, const PairData& d, const DpoCase& c) {
  const DpoResult want = cpuDpo(d, c), got = cudaDpo(d, c);
  CHECK_SCALAR(label + " loss", got.loss, want.loss);
  CHECK_GRADIENT(label + " dPolicyChosen", got.dChosen, want.dChosen);
  CHECK_GRADIENT(label + " dPolicyRejected", got.dRejected, want.dRejected);
  CHECK_PAIR_METRICS(label, got.metrics, want.metrics);
}

const char* const kDpoNames[] = {"sigmoid",  "hinge",    "ipo",      "robust",   "exo_pair",     "nca_pair", "bco_pair",
                                 "sppo_hard", "apo_zero", "apo_down", "discopop", "sigmoid_norm", "sft"};

// ---------------------------------------------------------------------------------------------
// GRPO

struct GrpoData {
  int64_t rows, seq;
  std::vector<float> logp, oldLogp, refLogp, advantages, mask;
};

// logp in [−5, −0.01]; old and ref within a few tenths of a nat (token ratios across both clip
// bounds and δ), old also shifted per row by −0.4, +0.4, 0 (rows 3k..3k+2; 3 does not divide the
// 32 lanes of the final reduction) so that sequence ratios leave the clip range too; advantages of alternating sign (low and high clipping in
// different rows, so the rows' clip fractions differ), row 2's exactly 0 (the surrogate's tie) when
// rows > 4; 3 in 4 tokens unmasked; row 0's mask empty when `emptyRow`.
GrpoData grpoData(int64_t rows, int64_t seq, uint32_t seed, bool emptyRow) {
  const size_t n = static_cast<size_t>(rows * seq);
  GrpoData d{rows, seq, uniform(n, seed, -5.0f, -0.01f), {}, {}, uniform(rows, seed + 1, 0.3f, 2.0f), {}};
  const std::vector<float> oldShift = test::randomNormals(n, seed + 2, 0.25f);
  const std::vector<float> refShift = test::randomNormals(n, seed + 3, 0.3f);
  const std::vector<float> coin = uniform(n, seed + 4, 0.0f, 1.0f);
  const float rowShift[3] = {-0.4f, 0.4f, 0.0f};
  d.oldLogp.resize(n);
  d.refLogp.resize(n);
  d.mask.resize(n);
  for (size_t i = 0; i < n; ++i) {
    d.oldLogp[i] = d.logp[i] + oldShift[i] + rowShift[(i / seq) % 3];
    d.refLogp[i] = d.logp[i] + refShift[i];
    d.mask[i] = coin[i] < 0.75f ? 1.0f : 0.0f;
  }
  for (int64_t r = 1; r < rows; r += 2) d.advantages[r] = -d.advantages[r];
  if (emptyRow) std::fill(d.mask.begin(), d.mask.begin() + seq, 0.0f);
  if (rows > 4) d.advantages[2] = 0.0f;
  return d;
}

struct GrpoCase {
  GrpoLossType lossType;
  ImportanceLevel level;
  bool offPolicy, withKl;
  float delta;
};

struct GrpoResult {
  double loss;
  std::vector<float> dLogp;
  GrpoMetrics metrics;
};

GrpoLossArgs grpoArgs(const GrpoData& d, const GrpoCase& c) {
  return {d.rows,
          d.seq,
          d.logp.data(),
          c.offPolicy ? d.oldLogp.data() : nullptr,
          c.withKl ? d.refLogp.data() : nullptr,
          d.advantages.data(),
          d.mask.data(),
          0.2f,
          0.28f,
          c.withKl ? 0.04f : 0.0f,
          c.delta,
          c.lossType,
          c.level,
          d.seq + 3,
          77.0,
          2,
          nullptr,
          nullptr,
          nullptr};
}

GrpoResult cpuGrpo(const GrpoData& d, const GrpoCase& c) {
  GrpoResult r{0.0, std::vector<float>(d.logp.size()), {}};
  GrpoLossArgs a = grpoArgs(d, c);
  a.loss = &r.loss;
  a.dLogp = r.dLogp.data();
  a.metrics = &r.metrics;
  cpu::grpoLoss(a);
  return r;
}

GrpoResult cudaGrpo(const GrpoData& d, const GrpoCase& c) {
  DeviceArray<float> logp(d.logp), oldLogp(d.oldLogp), refLogp(d.refLogp), advantages(d.advantages), mask(d.mask);
  DeviceArray<float> dLogp(d.logp.size());
  GrpoResult r{kNan, {}, {kNan, kNan, kNan, kNan, kNan, kNan, kNan}};
  GrpoLossArgs a = grpoArgs(d, c);
  a.logp = logp.data();
  a.oldLogp = onDevice(a.oldLogp, oldLogp);
  a.refLogp = onDevice(a.refLogp, refLogp);
  a.advantages = advantages.data();
  a.mask = mask.data();
  a.loss = &r.loss;
  a.dLogp = dLogp.data();
  a.metrics = &r.metrics;
  cuda::grpoLoss(a);
  r.dLogp = dLogp.download();
  return r;
}

std::string grpoLabel(const GrpoData& d, const GrpoCase& c) {
  static const char* const kTypes[] = {"grpo", "bnpo", "dr_grpo", "dapo"};
  return std::string("grpo [") + std::to_string(d.rows) + ", " + std::to_string(d.seq) + "] " +
         kTypes[static_cast<int>(c.lossType)] + (c.level == ImportanceLevel::Sequence ? " sequence" : " token") +
         (c.offPolicy ? " off-policy" : " on-policy") + (c.withKl ? " kl" : "") +
         (c.delta > 0.0f ? " delta" : "");
}

void checkGrpo(const GrpoData& d, const GrpoCase& c) {
  const std::string label = grpoLabel(d, c);
  const GrpoResult want = cpuGrpo(d, c), got = cudaGrpo(d, c);
  CHECK_SCALAR(label + " loss", got.loss, want.loss);
  CHECK_GRADIENT(label + " dLogp", got.dLogp, want.dLogp);
  const GrpoMetrics& g = got.metrics;
  const GrpoMetrics& w = want.metrics;
  CHECK_SCALAR(label + " kl", g.kl, w.kl);
  CHECK_SCALAR(label + " clip_ratio/low_mean", g.clipRatioLowMean, w.clipRatioLowMean);
  CHECK_SCALAR(label + " clip_ratio/high_mean", g.clipRatioHighMean, w.clipRatioHighMean);
  CHECK_SCALAR(label + " clip_ratio/region_mean", g.clipRatioRegionMean, w.clipRatioRegionMean);
  CHECK_SCALAR(label + " clip_ratio/low_min", g.clipRatioLowMin, w.clipRatioLowMin);
  CHECK_SCALAR(label + " clip_ratio/high_max", g.clipRatioHighMax, w.clipRatioHighMax);
  CHECK_SCALAR(label + " maskedTokens", g.maskedTokens, w.maskedTokens);
}

// Every loss type × level × on/off-policy × KL × δ on one input.
void checkGrpoAllCases(const GrpoData& d) {
  for (int type = 0; type < 4; ++type) {
    for (ImportanceLevel level : {ImportanceLevel::Token, ImportanceLevel::Sequence}) {
      for (bool offPolicy : {false, true}) {
        for (bool withKl : {false, true}) {
          for (float delta : {0.0f, 1.1f}) {
            checkGrpo(d, {static_cast<GrpoLossType>(type), level, offPolicy, withKl, delta});
          }
        }
      }
    }
  }
}

bool sameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace
#endif  // RLHF_WITH_CUDA

#ifndef RLHF_WITH_CUDA
#define REQUIRE_CUDA() SKIP("built without CUDA")
#else
#define REQUIRE_CUDA() ::rlhf::test::requireCuda()
#endif

TEST(dpo_loss_cuda_every_type_and_f_divergence) {
  REQUIRE_CUDA();
#ifdef RLHF_WITH_CUDA
  using rlhf::DpoLossType;
  using rlhf::FDivergence;
  const PairData d = dpoPairs(37, 11);
  struct FCase {
    FDivergence f;
    float alpha;
    const char* name;
  };
  const FCase fCases[] = {{FDivergence::ReverseKl, 0.5f, "reverse_kl"},
                          {FDivergence::ForwardKl, 0.5f, "forward_kl"},
                          {FDivergence::JsDivergence, 0.5f, "js_divergence"},
                          {FDivergence::AlphaDivergence, 0.5f, "alpha_divergence(0.5)"},
                          {FDivergence::AlphaDivergence, 1.0f, "alpha_divergence(1)"},
                          {FDivergence::AlphaDivergence, 2.0f, "alpha_divergence(2)"}};
  for (const FCase& f : fCases) {
    for (int type = 0; type <= static_cast<int>(DpoLossType::Sft); ++type) {
      const auto t = static_cast<DpoLossType>(type);
      for (float eps : {0.0f, 0.1f}) {
        if (t == DpoLossType::ExoPair && eps == 0.0f) continue;  // log ε: the binding requires ε > 0
        // Lengths only where a type reads them (the binding passes null otherwise).
        const bool lengthsNeeded = t == DpoLossType::Ipo || t == DpoLossType::SigmoidNorm || t == DpoLossType::Sft;
        DpoCase c{{t}, {0.7f}, f.f, f.alpha, eps, lengthsNeeded, false};
        checkDpo(std::string("dpo ") + kDpoNames[type] + " " + f.name + " eps=" + std::to_string(eps), d, c);
      }
    }
  }
#endif
}

TEST(dpo_loss_cuda_weighted_lists_wpo_sizes) {
  REQUIRE_CUDA();
#ifdef RLHF_WITH_CUDA
  using rlhf::DpoLossType;
  // A list with sft, a repeated type (merged into one entry on the GPU) and WPO weights, at sizes
  // below, at and across the 256-thread blocks.
  const DpoCase mixed{{DpoLossType::Sigmoid, DpoLossType::Sft, DpoLossType::Ipo, DpoLossType::Sigmoid,
                       DpoLossType::BcoPair, DpoLossType::Sft},
                      {0.7f, 0.3f, 0.5f, 1.1f, 0.2f, 0.4f},
                      rlhf::FDivergence::ReverseKl,
                      0.5f,
                      0.1f,
                      true,
                      true};
  for (int64_t pairs : {1, 37, 64, 256, 4097, 9001}) {  // 9001: more partial rows (36) than a warp
    const PairData d = dpoPairs(pairs, 100 + static_cast<uint32_t>(pairs));
    checkDpo("dpo mixed list P=" + std::to_string(pairs), d, mixed);
    DpoCase wpo{{DpoLossType::Sigmoid}, {1.0f}, rlhf::FDivergence::ReverseKl, 0.5f, 0.0f, false, true};
    checkDpo("dpo sigmoid wpo P=" + std::to_string(pairs), d, wpo);
    DpoCase sft{{DpoLossType::Sft}, {1.0f}, rlhf::FDivergence::ReverseKl, 0.5f, 0.0f, true, true};
    checkDpo("dpo sft wpo P=" + std::to_string(pairs), d, sft);
    DpoCase twoTypes{{DpoLossType::SigmoidNorm, DpoLossType::ApoDown}, {0.6f, 0.4f}, rlhf::FDivergence::JsDivergence,
                     0.5f, 0.0f, true, false};
    checkDpo("dpo sigmoid_norm+apo_down P=" + std::to_string(pairs), d, twoTypes);
  }
  // Every completion empty: lengths clamp to 1, sft divides by max(Σ n, 1).
  PairData empty = dpoPairs(37, 7);
  std::fill(empty.chosenLengths.begin(), empty.chosenLengths.end(), 0.0f);
  std::fill(empty.rejectedLengths.begin(), empty.rejectedLengths.end(), 0.0f);
  checkDpo("dpo mixed list empty completions", empty, mixed);
#endif
}

TEST(dpo_loss_cuda_is_deterministic) {
  REQUIRE_CUDA();
#ifdef RLHF_WITH_CUDA
  using rlhf::DpoLossType;
  const PairData d = dpoPairs(4097, 5);
  const DpoCase c{{DpoLossType::Sigmoid, DpoLossType::Sft}, {1.0f, 0.5f}, rlhf::FDivergence::ReverseKl, 0.5f, 0.0f,
                  true, true};
  const DpoResult a = cudaDpo(d, c), b = cudaDpo(d, c);
  CHECK(std::memcmp(&a.loss, &b.loss, sizeof(double)) == 0);
  CHECK(std::memcmp(&a.metrics, &b.metrics, sizeof(rlhf::PairMetrics)) == 0);
  CHECK(sameBits(a.dChosen, b.dChosen));
  CHECK(sameBits(a.dRejected, b.dRejected));
#endif
}

TEST(kto_loss_cuda_matches_cpu) {
  REQUIRE_CUDA();
#ifdef RLHF_WITH_CUDA
  using namespace rlhf;
  for (int64_t rows : {1, 37, 4097}) {
    const PairData d = dpoPairs(rows, 200 + static_cast<uint32_t>(rows));
    for (int rule = 0; rule < 2; ++rule) {  // mixed rows; only desirable rows
      std::vector<int32_t> desirable(rows);
      for (int64_t i = 0; i < rows; ++i) desirable[i] = rule == 1 || i % 3 != 1;
      for (KtoLossType type : {KtoLossType::Kto, KtoLossType::ApoZeroUnpaired}) {
        const std::string label = std::string("kto ") + (type == KtoLossType::Kto ? "kto" : "apo_zero_unpaired") +
                                   (rule ? " desirable only" : " mixed") + " B=" + std::to_string(rows);
        KtoLossArgs a{};
        a.rows = rows;
        a.policyLogps = d.policyChosen.data();
        a.refLogps = d.refChosen.data();
        a.desirable = desirable.data();
        a.klAnchor = 0.3f;
        a.beta = 0.1f;
        a.desirableWeight = 1.0f;
        a.undesirableWeight = 1.33f;
        a.lossType = type;
        double loss = 0.0;
        std::vector<float> dPolicy(rows);
        KtoMetrics m{};
        a.loss = &loss;
        a.dPolicy = dPolicy.data();
        a.metrics = &m;
        cpu::ktoLoss(a);

        DeviceArray<float> policy(d.policyChosen), ref(d.refChosen), gotD(rows);
        DeviceArray<int32_t> flags(desirable);
        double gotLoss = kNan;
        KtoMetrics g{kNan, kNan, kNan, kNan, -1, -1};
        a.policyLogps = policy.data();
        a.refLogps = ref.data();
        a.desirable = flags.data();
        a.loss = &gotLoss;
        a.dPolicy = gotD.data();
        a.metrics = &g;
        cuda::ktoLoss(a);
        CHECK_SCALAR(label + " loss", gotLoss, loss);
        CHECK_GRADIENT(label + " dPolicy", gotD.download(), dPolicy);
        CHECK_SCALAR(label + " rewards/chosen_sum", g.rewardsChosenSum, m.rewardsChosenSum);
        CHECK_SCALAR(label + " rewards/rejected_sum", g.rewardsRejectedSum, m.rewardsRejectedSum);
        CHECK_SCALAR(label + " logps/chosen_sum", g.logpsChosenSum, m.logpsChosenSum);
        CHECK_SCALAR(label + " logps/rejected_sum", g.logpsRejectedSum, m.logpsRejectedSum);
        CHECK(g.chosenCount == m.chosenCount);
        CHECK(g.rejectedCount == m.rejectedCount);
      }
    }
  }
#endif
}

TEST(orpo_loss_cuda_matches_cpu) {
  REQUIRE_CUDA();
#ifdef RLHF_WITH_CUDA
  using namespace rlhf;
  for (int64_t pairs : {1, 37, 9001}) {
    const PairData d = freePairs(pairs, 300 + static_cast<uint32_t>(pairs), -300.0f);
    const std::string label = "orpo P=" + std::to_string(pairs);
    OrpoLossArgs a{};
    a.pairs = pairs;
    a.policyChosen = d.policyChosen.data();
    a.policyRejected = d.policyRejected.data();
    a.chosenLengths = d.chosenLengths.data();
    a.rejectedLengths = d.rejectedLengths.data();
    a.beta = 0.1f;
    a.nll = 0.9;
    double loss = 0.0;
    std::vector<float> dChosen(pairs), dRejected(pairs);
    OddsRatioMetrics m{};
    a.loss = &loss;
    a.dPolicyChosen = dChosen.data();
    a.dPolicyRejected = dRejected.data();
    a.metrics = &m;
    cpu::orpoLoss(a);

    DevicePairs g(d);
    DeviceArray<float> gotChosen(pairs), gotRejected(pairs);
    double gotLoss = kNan;
    OddsRatioMetrics gm{nanPairMetrics(), kNan, kNan, kNan};
    a.policyChosen = g.policyChosen.data();
    a.policyRejected = g.policyRejected.data();
    a.chosenLengths = g.chosenLengths.data();
    a.rejectedLengths = g.rejectedLengths.data();
    a.loss = &gotLoss;
    a.dPolicyChosen = gotChosen.data();
    a.dPolicyRejected = gotRejected.data();
    a.metrics = &gm;
    cuda::orpoLoss(a);
    CHECK_SCALAR(label + " loss", gotLoss, loss);
    CHECK_GRADIENT(label + " dPolicyChosen", gotChosen.download(), dChosen);
    CHECK_GRADIENT(label + " dPolicyRejected", gotRejected.download(), dRejected);
    CHECK_PAIR_METRICS(label, gm.pair, m.pair);
    CHECK_SCALAR(label + " log_odds_ratio", gm.logOddsRatio, m.logOddsRatio);
    CHECK_SCALAR(label + " log_odds_chosen", gm.logOddsChosen, m.logOddsChosen);
    CHECK_SCALAR(label + " nll_loss", gm.nllLoss, m.nllLoss);
  }
#endif
}

TEST(cpo_loss_cuda_every_type_with_alpha) {
  REQUIRE_CUDA();
#ifdef RLHF_WITH_CUDA
  using namespace rlhf;
  static const char* const kNames[] = {"sigmoid", "hinge", "ipo", "simpo"};
  for (int64_t pairs : {1, 37, 4097}) {
    // Sums in [−60, 0): AlphaPO's e^{−alpha·x} stays finite in float32 gradients.
    const PairData d = freePairs(pairs, 400 + static_cast<uint32_t>(pairs), -60.0f);
    for (int type = 0; type < 4; ++type) {
      for (float alpha : {0.0f, 0.7f}) {
        for (float eps : {0.0f, 0.1f}) {
          for (float cpoAlpha : {0.0f, 1.0f}) {
            const auto t = static_cast<CpoLossType>(type);
            const bool averaged = t == CpoLossType::Ipo || t == CpoLossType::Simpo;
            const std::string label = std::string("cpo ") + kNames[type] + " alpha=" + std::to_string(alpha) +
                                      " eps=" + std::to_string(eps) + " cpoAlpha=" + std::to_string(cpoAlpha) +
                                      " P=" + std::to_string(pairs);
            CpoLossArgs a{};
            a.pairs = pairs;
            a.policyChosen = d.policyChosen.data();
            a.policyRejected = d.policyRejected.data();
            a.chosenLengths = averaged ? d.chosenLengths.data() : nullptr;  // as the binding passes them
            a.rejectedLengths = averaged ? d.rejectedLengths.data() : nullptr;
            a.lossType = t;
            a.beta = 0.1f;
            a.labelSmoothing = eps;
            a.simpoGamma = 0.5f;
            a.alpha = alpha;
            a.cpoAlpha = cpoAlpha;
            a.nll = cpoAlpha == 0.0f ? 0.0 : 0.9;
            double loss = 0.0;
            std::vector<float> dChosen(pairs), dRejected(pairs);
            CpoMetrics m{};
            a.loss = &loss;
            a.dPolicyChosen = dChosen.data();
            a.dPolicyRejected = dRejected.data();
            a.metrics = &m;
            cpu::cpoLoss(a);

            DevicePairs g(d);
            DeviceArray<float> gotChosen(pairs), gotRejected(pairs);
            double gotLoss = kNan;
            CpoMetrics gm{nanPairMetrics(), kNan};
            a.policyChosen = g.policyChosen.data();
            a.policyRejected = g.policyRejected.data();
            a.chosenLengths = onDevice(a.chosenLengths, g.chosenLengths);
            a.rejectedLengths = onDevice(a.rejectedLengths, g.rejectedLengths);
            a.loss = &gotLoss;
            a.dPolicyChosen = gotChosen.data();
            a.dPolicyRejected = gotRejected.data();
            a.metrics = &gm;
            cuda::cpoLoss(a);
            CHECK_SCALAR(label + " loss", gotLoss, loss);
            CHECK_GRADIENT(label + " dPolicyChosen", gotChosen.download(), dChosen);
            CHECK_GRADIENT(label + " dPolicyRejected", gotRejected.download(), dRejected);
            CHECK_PAIR_METRICS(label, gm.pair, m.pair);
            CHECK_SCALAR(label + " nll_loss", gm.nllLoss, m.nllLoss);
          }
        }
      }
    }
  }
#endif
}

TEST(grpo_loss_cuda_small_and_odd_shapes) {
  REQUIRE_CUDA();
#ifdef RLHF_WITH_CUDA
  checkGrpoAllCases(grpoData(3, 7, 21, true));
  checkGrpoAllCases(grpoData(9, 33, 27, true));
  checkGrpoAllCases(grpoData(1, 5, 22, false));  // B = 1
  checkGrpoAllCases(grpoData(1, 5, 23, true));   // no mask token at all: low_min / high_max NaN
#endif
}

TEST(grpo_loss_cuda_clip_fractions_over_many_rows) {
  REQUIRE_CUDA();
#ifdef RLHF_WITH_CUDA
  // Every advantage of one sign: every row has its own nonzero low (or high) clip fraction, so
  // low_min / high_max pick one row among 70 (more rows than the final reduction's lanes).
  for (float sign : {-1.0f, 1.0f}) {
    GrpoData d = grpoData(70, 40, 28, true);
    for (float& a : d.advantages) a = sign * std::fabs(a) + sign * 0.1f;
    for (auto level : {rlhf::ImportanceLevel::Token, rlhf::ImportanceLevel::Sequence}) {
      checkGrpo(d, {rlhf::GrpoLossType::Dapo, level, true, false, 0.0f});
      checkGrpo(d, {rlhf::GrpoLossType::Grpo, level, true, true, 1.1f});
    }
  }
#endif
}

TEST(grpo_loss_cuda_realistic_shapes) {
  REQUIRE_CUDA();
#ifdef RLHF_WITH_CUDA
  checkGrpoAllCases(grpoData(64, 1029, 24, true));
  // T = 4096: the largest row blocks (512 threads, 8 tokens each).
  const GrpoData d = grpoData(8, 4096, 25, true);
  for (auto level : {rlhf::ImportanceLevel::Token, rlhf::ImportanceLevel::Sequence}) {
    checkGrpo(d, {rlhf::GrpoLossType::Dapo, level, true, true, 0.0f});
    checkGrpo(d, {rlhf::GrpoLossType::Bnpo, level, true, false, 1.1f});
    checkGrpo(d, {rlhf::GrpoLossType::Grpo, level, false, true, 0.0f});
  }
#endif
}

TEST(grpo_loss_cuda_is_deterministic) {
  REQUIRE_CUDA();
#ifdef RLHF_WITH_CUDA
  const GrpoData d = grpoData(64, 1029, 26, true);
  for (auto level : {rlhf::ImportanceLevel::Token, rlhf::ImportanceLevel::Sequence}) {
    const GrpoCase c{rlhf::GrpoLossType::Bnpo, level, true, true, 1.1f};
    const GrpoResult a = cudaGrpo(d, c), b = cudaGrpo(d, c);
    CHECK(std::memcmp(&a.loss, &b.loss, sizeof(double)) == 0);
    CHECK(std::memcmp(&a.metrics, &b.metrics, sizeof(rlhf::GrpoMetrics)) == 0);
    CHECK(sameBits(a.dLogp, b.dLogp));
  }
#endif
}
