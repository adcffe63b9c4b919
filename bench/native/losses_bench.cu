// Preference and RL losses: dpoLoss at 64 and 4096 pairs, grpoLoss at [64, 4096] and [512, 1024].
// Memory-bound rows: the work is the bytes every call must move (inputs read once, gradients
// written once). A call includes its launches and the copy of the scalars back (which waits for
// the stream), so the small shapes measure latency more than bandwidth.
#include <string>
#include <vector>

#include "../../cuda/device_buffer.cuh"
#include "../../cuda/kernels_cuda.h"
#include "bench.h"

namespace rlhf::bench {
namespace {

// A device buffer of `count` floats holding `value`.
cuda::DeviceBuffer<float> filled(size_t count, float value) {
  cuda::DeviceBuffer<float> buffer(count);
  const std::vector<float> host(count, value);
  cuda::copyToDevice(buffer.data(), host.data(), count * sizeof(float));
  return buffer;
}

void benchDpo(Context& ctx, int64_t pairs) {
  const size_t n = static_cast<size_t>(pairs);
  cuda::DeviceBuffer<float> policyChosen = filled(n, -120.0f), policyRejected = filled(n, -135.0f);
  cuda::DeviceBuffer<float> refChosen = filled(n, -121.0f), refRejected = filled(n, -133.0f);
  cuda::DeviceBuffer<float> dChosen(n), dRejected(n);
  const DpoLossType types[] = {DpoLossType::Sigmoid};
  const float weights[] = {1.0f};
  double loss = 0.0;
  PairMetrics metrics{};
  DpoLossArgs args{};
  args.pairs = pairs;
  args.policyChosen = policyChosen.data();
  args.policyRejected = policyRejected.data();
  args.refChosen = refChosen.data();
  args.refRejected = refRejected.data();
  args.lossTypes = types;
  args.lossWeights = weights;
  args.numLossTypes = 1;
  args.beta = 0.1f;
  args.fDivergence = FDivergence::ReverseKl;
  args.loss = &loss;
  args.dPolicyChosen = dChosen.data();
  args.dPolicyRejected = dRejected.data();
  args.metrics = &metrics;
  const double ms = ctx.time([&] { cuda::dpoLoss(args); });
  // 4 sums read, 2 gradients written.
  ctx.report({"dpoLoss", "sigmoid P=" + std::to_string(pairs), ms, 6.0 * sizeof(float) * pairs, false,
              ctx.lastPeakBytes(), ""});
}

void benchGrpo(Context& ctx, int64_t rows, int64_t seq) {
  const size_t n = static_cast<size_t>(rows * seq);
  cuda::DeviceBuffer<float> logp = filled(n, -1.2f), oldLogp = filled(n, -1.25f), refLogp = filled(n, -1.1f);
  cuda::DeviceBuffer<float> mask = filled(n, 1.0f), advantages = filled(static_cast<size_t>(rows), 0.5f);
  cuda::DeviceBuffer<float> dLogp(n);
  double loss = 0.0;
  GrpoMetrics metrics{};
  const std::string shape = "[" + std::to_string(rows) + ", " + std::to_string(seq) + "]";
  for (ImportanceLevel level : {ImportanceLevel::Token, ImportanceLevel::Sequence}) {
    GrpoLossArgs args{};
    args.rows = rows;
    args.seq = seq;
    args.logp = logp.data();
    args.oldLogp = oldLogp.data();
    args.refLogp = refLogp.data();
    args.advantages = advantages.data();
    args.mask = mask.data();
    args.epsilonLow = 0.2f;
    args.epsilonHigh = 0.28f;
    args.beta = 0.04f;
    args.lossType = GrpoLossType::Dapo;
    args.importanceLevel = level;
    args.maxCompletionLength = seq;
    args.tokenNormalizer = static_cast<double>(n);
    args.gradAccumSteps = 1;
    args.loss = &loss;
    args.dLogp = dLogp.data();
    args.metrics = &metrics;
    const double ms = ctx.time([&] { cuda::grpoLoss(args); });
    // logp, oldLogp, refLogp, mask read and dLogp written: 5 floats a token; advantages [B].
    const double bytes = 5.0 * sizeof(float) * static_cast<double>(n) + sizeof(float) * rows;
    ctx.report({"grpoLoss", "dapo off-policy kl " +
                                std::string(level == ImportanceLevel::Token ? "token " : "sequence ") + shape,
                ms, bytes, false, ctx.lastPeakBytes(), ""});
  }
}

}  // namespace

BENCH(losses) {
  benchDpo(ctx, 64);
  benchDpo(ctx, 4096);
  benchGrpo(ctx, 64, 4096);
  benchGrpo(ctx, 512, 1024);
}

}  // namespace rlhf::bench
