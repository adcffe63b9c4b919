// Benchmarks of the memory-bound kernels around the matmuls: embedding, RMSNorm, RoPE,
// cross-entropy, AdamW and the gradient norm, at the shapes of a Llama-3.2-1B step (hidden 2048,
// 32 query heads of 64, MLP 8192, vocabulary 128256; a micro-batch of 4 × 2048 tokens) with bf16
// activations. Every row reports the bytes the kernel must move (each tensor read or written once)
// against the card's copy ceiling.
#include <cstdio>
#include <initializer_list>
#include <string>
#include <vector>

#include "../../cuda/device_buffer.cuh"
#include "../../cuda/kernels_cuda.h"
#include "bench.h"
#include "fill.cuh"

namespace rlhf::bench {
namespace {

using cuda::DeviceBuffer;

constexpr int64_t kBatch = 4, kSeq = 2048, kTokens = kBatch * kSeq;
constexpr int64_t kHidden = 2048, kHeads = 32, kHeadDim = 64, kMlp = 8192, kVocab = 128256;
constexpr double kBf16 = 2.0, kF32 = 4.0, kI32 = 4.0;

std::string dims(std::initializer_list<int64_t> sizes) {
  std::string out = "[";
  for (int64_t s : sizes) out += (out.size() > 1 ? ", " : "") + std::to_string(s);
  return out + "]";
}

Row bytesRow(const Context& ctx, std::string kernel, std::string shape, double ms, double bytes,
             std::string note = "") {
  return Row{std::move(kernel), std::move(shape), ms, bytes, false, ctx.lastPeakBytes(), std::move(note)};
}

BENCH(embedding) {
  const int64_t n = kTokens, v = kVocab, d = kHidden;
  DeviceBuffer<bf16> table(v * d), out(n * d), dOut(n * d);
  DeviceBuffer<int32_t> ids(n);
  DeviceBuffer<float> dTable(v * d);
  fillUniform(table.data(), v * d, 1.0f, 1);
  fillUniform(dOut.data(), n * d, 1.0f, 2);
  fillIds(ids.data(), n, static_cast<int32_t>(v), 3);
  cuda::zeroDevice(dTable.data(), v * d * sizeof(float));
  const std::string shape = "bf16 ids " + dims({n}) + " table " + dims({v, d});

  const EmbeddingArgsT<bf16> fwd{table.data(), ids.data(), out.data(), n, v, d};
  double ms = ctx.time([&] { cuda::embedding(fwd); });
  ctx.report(bytesRow(ctx, "embedding", shape, ms, n * d * 2 * kBf16 + n * kI32));

  const EmbeddingBackwardArgsT<bf16> bwd{dOut.data(), ids.data(), dTable.data(), n, v, d};
  ms = ctx.time([&] { cuda::embeddingBackward(bwd); });
  // dOut read, dTable rows read and written (float32 atomics).
  ctx.report(bytesRow(ctx, "embeddingBackward", shape, ms, n * d * (kBf16 + 2 * kF32) + n * kI32, "atomicAdd"));
}

// rows × dim: the decoder's hidden states, or Qwen3's per-head q/k norm (dim = head_dim).
void benchRmsNorm(Context& ctx, int64_t rows, int64_t dim, const std::string& what) {
  DeviceBuffer<bf16> x(rows * dim), w(dim), y(rows * dim), dY(rows * dim), dX(rows * dim);
  DeviceBuffer<float> rstd(rows), dW(dim);
  fillUniform(x.data(), rows * dim, 2.0f, 4);
  fillUniform(w.data(), dim, 1.0f, 5);
  fillUniform(dY.data(), rows * dim, 1.0f, 6);
  cuda::zeroDevice(dW.data(), dim * sizeof(float));
  const std::string shape = "bf16 " + what + " " + dims({rows, dim});

  const RmsNormArgsT<bf16> fwd{x.data(), w.data(), y.data(), rstd.data(), rows, dim, 1e-5f};
  double ms = ctx.time([&] { cuda::rmsNorm(fwd); });
  ctx.report(bytesRow(ctx, "rmsNorm", shape, ms, rows * dim * 2 * kBf16 + dim * kBf16 + rows * kF32));

  // The backward reads dY and x, writes dX; its dWeight pass adds the slots' partial rows.
  const double bwdBytes = rows * dim * 3 * kBf16 + dim * kBf16 + rows * kF32;
  RmsNormBackwardArgsT<bf16> bwd{dY.data(), x.data(), w.data(), rstd.data(), dX.data(), dW.data(), rows, dim, false};
  ms = ctx.time([&] { cuda::rmsNormBackward(bwd); });
  ctx.report(bytesRow(ctx, "rmsNormBackward", shape, ms, bwdBytes, "with dWeight"));
  bwd.dWeight = nullptr;
  ms = ctx.time([&] { cuda::rmsNormBackward(bwd); });
  ctx.report(bytesRow(ctx, "rmsNormBackward", shape, ms, bwdBytes, "frozen weight"));
}

BENCH(rmsnorm) {
  benchRmsNorm(ctx, kTokens, kHidden, "hidden");
  benchRmsNorm(ctx, kTokens * 16, 128, "q/k heads");  // Qwen3-1.7B: 16 query heads of 128
}

BENCH(rope) {
  const int64_t count = kTokens * kHeads * kHeadDim;
  DeviceBuffer<bf16> q(count);
  DeviceBuffer<int32_t> positions(kTokens);
  DeviceBuffer<float> invFreq(kHeadDim / 2);
  fillUniform(q.data(), count, 1.0f, 7);
  fillIds(positions.data(), kTokens, static_cast<int32_t>(kSeq), 8);
  cuda::ropeFrequencies({kHeadDim, 500000.0, true, 32.0, 1.0, 4.0, 8192.0, invFreq.data()});
  const std::string shape = "bf16 q in place " + dims({kBatch, kSeq, kHeads, kHeadDim});
  const double bytes = count * 2 * kBf16 + kTokens * kI32;

  const RopeArgsT<bf16> fwd{q.data(), q.data(), positions.data(), invFreq.data(), kBatch, kSeq, kHeads, kHeadDim, 1.0f};
  double ms = ctx.time([&] { cuda::rope(fwd); });
  ctx.report(bytesRow(ctx, "rope", shape, ms, bytes));
  const RopeBackwardArgsT<bf16> bwd{q.data(),  q.data(), positions.data(), invFreq.data(), kBatch,
                                    kSeq,      kHeads,   kHeadDim,         1.0f};
  ms = ctx.time([&] { cuda::ropeBackward(bwd); });
  ctx.report(bytesRow(ctx, "ropeBackward", shape, ms, bytes));
}

BENCH(cross_entropy) {
  const int64_t n = 2048, v = kVocab;  // one 2048-token sequence's logits (1 GiB of them for 4)
  DeviceBuffer<bf16> logits(n * v), dLogits(n * v);
  DeviceBuffer<int32_t> targets(n);
  DeviceBuffer<float> nll(n), lse(n);
  fillUniform(logits.data(), n * v, 8.0f, 9);
  fillIds(targets.data(), n, static_cast<int32_t>(v), 10);
  const std::string shape = "bf16 logits " + dims({n, v});
  double loss = 0.0;
  int64_t count = 0;

  const CrossEntropyArgsT<bf16> fwd{logits.data(), targets.data(), n, v, -100, false, nll.data(), lse.data(), &loss,
                                    &count};
  double ms = ctx.time([&] { cuda::crossEntropy(fwd); });
  ctx.report(bytesRow(ctx, "crossEntropy", shape, ms, n * v * kBf16 + n * (kI32 + 2 * kF32), "with loss copy"));
  const CrossEntropyBackwardArgsT<bf16> bwd{logits.data(), targets.data(), lse.data(), n, v, -100, false, count, 1.0f,
                                            dLogits.data()};
  ms = ctx.time([&] { cuda::crossEntropyBackward(bwd); });
  ctx.report(bytesRow(ctx, "crossEntropyBackward", shape, ms, n * v * 2 * kBf16 + n * (kI32 + kF32)));
}

// Float32 tensors of the given sizes, filled.
std::vector<DeviceBuffer<float>> floatTensors(const std::vector<int64_t>& counts, float scale, uint32_t seed) {
  std::vector<DeviceBuffer<float>> out;
  for (int64_t c : counts) {
    out.emplace_back(static_cast<size_t>(c));
    fillUniform(out.back().data(), c, scale, seed++);
  }
  return out;
}

// The optimizer's lists: every tensor of `counts` with its gradient and moments.
void benchOptimizer(Context& ctx, const std::vector<int64_t>& counts, const std::string& what) {
  auto params = floatTensors(counts, 0.02f, 100), grads = floatTensors(counts, 1e-3f, 400),
       m = floatTensors(counts, 1e-4f, 700), v = floatTensors(counts, 1e-8f, 1000);
  int64_t total = 0;
  std::vector<AdamWTensor> tensors;
  std::vector<float*> gradData;
  for (size_t i = 0; i < counts.size(); ++i) {
    tensors.push_back({params[i].data(), grads[i].data(), m[i].data(), v[i].data(), counts[i]});
    gradData.push_back(grads[i].data());
    total += counts[i];
  }
  char totalText[32];
  std::snprintf(totalText, sizeof totalText, "%.1f M", static_cast<double>(total) / 1e6);
  const std::string shape = what + ": " + std::to_string(counts.size()) + " tensors, " + totalText;

  const AdamWArgs adam{tensors.data(), static_cast<int64_t>(tensors.size()), 2e-4, 0.9, 0.999, 1e-8, 0.01, 10};
  double ms = ctx.time([&] { cuda::adamw(adam); });
  // param, m, v read and written, grad read.
  ctx.report(bytesRow(ctx, "adamw", shape, ms, total * 7 * kF32, "one launch"));

  const TensorList list{gradData.data(), counts.data(), static_cast<int64_t>(counts.size())};
  ms = ctx.time([&] { cuda::sumOfSquares(list); });
  ctx.report(bytesRow(ctx, "sumOfSquares", shape, ms, total * kF32, "with result copy"));
  ms = ctx.time([&] { cuda::scaleInPlace(list, 0.999f); });
  ctx.report(bytesRow(ctx, "scaleInPlace", shape, ms, total * 2 * kF32));
}

// {in, out} of the seven projections of a Llama-3.2-1B layer.
constexpr int64_t kProjections[7][2] = {{kHidden, kHidden}, {kHidden, 512},  {kHidden, 512}, {kHidden, kHidden},
                                        {kHidden, kMlp},    {kHidden, kMlp}, {kMlp, kHidden}};

BENCH(adamw_lora) {
  // LoRA r = 16 on every projection of the 16 layers: A [16, in] and B [out, 16].
  std::vector<int64_t> counts;
  for (int layer = 0; layer < 16; ++layer) {
    for (const auto& p : kProjections) {
      counts.push_back(16 * p[0]);
      counts.push_back(p[1] * 16);
    }
  }
  benchOptimizer(ctx, counts, "LoRA r16 1B");
}

BENCH(adamw_full) {
  // Full fine-tuning of the projections of 4 layers (large tensors: the bandwidth ceiling).
  std::vector<int64_t> counts;
  for (int layer = 0; layer < 4; ++layer) {
    for (const auto& p : kProjections) counts.push_back(p[0] * p[1]);
  }
  benchOptimizer(ctx, counts, "1B projections x4 layers");
}

}  // namespace
}  // namespace rlhf::bench
