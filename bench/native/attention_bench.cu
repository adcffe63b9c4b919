// Attention forward and backward (kernels.h §5) at two training shapes, bf16 and float32, causal:
// a long-context GQA layer (B = 1, T = S = 2048, Hq = 32, Hkv = 8, D = 128) and a batch of short
// sequences (B = 8, T = S = 512, Hq = Hkv = 16, D = 64). Work is the FLOP of the products over the
// causal half: 4·B·Hq·T·S/2·D forward (Q·Kᵀ and P·V), 2.5× that backward (Q·Kᵀ, dO·Vᵀ, Pᵀ·dO, dSᵀ·Q,
// dS·K; the recomputations of the dQ pass are not counted as work). Inputs are random normals
// (never zeros); the backward reads the forward's out and lse.
#include <cstdio>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "../../cuda/device_buffer.cuh"
#include "../../cuda/kernels_cuda.h"
#include "bench.h"

namespace {

using namespace rlhf;

template <typename T>
cuda::DeviceBuffer<T> randomNormals(size_t count, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<T> host(count);
  for (T& x : host) {
    if constexpr (std::is_same_v<T, bf16>) x = bf16{floatToBf16(dist(gen))};
    else x = dist(gen);
  }
  cuda::DeviceBuffer<T> buffer(count);
  cuda::copyToDevice(buffer.data(), host.data(), count * sizeof(T));
  return buffer;
}

struct Shape {
  int64_t batch, seq, headsQ, headsKv, dim;
};

template <typename T>
void benchAttention(bench::Context& ctx, const Shape& s) {
  constexpr bool kBf16 = std::is_same_v<T, bf16>;
  const size_t qCount = s.batch * s.seq * s.headsQ * s.dim, kCount = s.batch * s.seq * s.headsKv * s.dim;
  auto q = randomNormals<T>(qCount, 1), k = randomNormals<T>(kCount, 2), v = randomNormals<T>(kCount, 3);
  auto dOut = randomNormals<T>(qCount, 4);
  cuda::DeviceBuffer<T> out(qCount), dQ(qCount), dK(kCount), dV(kCount);
  cuda::DeviceBuffer<float> lse(s.batch * s.headsQ * s.seq);
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.dim));

  char shape[64];
  std::snprintf(shape, sizeof shape, "B%lld T%lld Hq%lld Hkv%lld D%lld causal", static_cast<long long>(s.batch),
                static_cast<long long>(s.seq), static_cast<long long>(s.headsQ), static_cast<long long>(s.headsKv),
                static_cast<long long>(s.dim));
  const std::string type = kBf16 ? " bf16" : " f32";
  const char* note = kBf16 && s.dim <= 128 ? "WMMA tensor cores" : "SIMT";
  const double forwardFlop = 4.0 * s.batch * s.headsQ * s.seq * s.seq / 2 * s.dim;

  const AttentionArgsT<T> forward{q.data(), k.data(), v.data(), nullptr, out.data(), lse.data(), s.batch, s.seq,
                                  s.seq, s.headsQ, s.headsKv, s.dim, scale, true};
  double ms = ctx.time([&] { cuda::attention(forward); });
  ctx.report({"attention fwd" + type, shape, ms, forwardFlop, true, ctx.lastPeakBytes(), note});

  const AttentionBackwardArgsT<T> backward{q.data(), k.data(), v.data(), nullptr, out.data(), lse.data(),
                                           dOut.data(), dQ.data(), dK.data(), dV.data(), s.batch, s.seq, s.seq,
                                           s.headsQ, s.headsKv, s.dim, scale, true};
  ms = ctx.time([&] { cuda::attentionBackward(backward); });
  ctx.report({"attention bwd" + type, shape, ms, 2.5 * forwardFlop, true, ctx.lastPeakBytes(), note});
}

}  // namespace

BENCH(attention) {
  const Shape shapes[] = {{1, 2048, 32, 8, 128}, {8, 512, 16, 16, 64}};
  for (const Shape& s : shapes) {
    benchAttention<bf16>(ctx, s);
    benchAttention<float>(ctx, s);
  }
}
