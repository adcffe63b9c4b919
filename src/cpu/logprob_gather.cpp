// Log-prob gathering through the lm_head without materialising the [N, V] logits (kernels.h §8).
//
// Only tokens whose target is not ignoreIndex are processed: their row ids are listed first
// (`valid`, M of them) and cut into chunks of cs = min(chunkSize, M) tokens, so prompt and padding
// tokens cost nothing. Work is a grid of tiles (chunk c, vocabulary range r); a tile gathers its
// chunk's hidden rows into a dense [cs, D] buffer and walks its range in blocks of `blockCols`
// columns: one sgemm gives the block's logits z = H_c·W_bᵀ/T [cs, blockCols], then a pass over
// the block updates (forward) or consumes (backward) each token's softmax statistics.
//
// Determinism: the tiling depends only on (M, V, chunkSize), never on the thread count, and every
// partial result is combined in a fixed order, so outputs are bit-identical for any
// RLHF_NUM_THREADS. (sgemm runs single-threaded inside a tile; when a call has a single tile it
// may thread over rows, which leaves each element's arithmetic unchanged.)
//
// Parallelism: about kTargetTasks tiles per parallel step whatever N is (fewer only for a small
// V). With many chunks (large N) each forward tile is a whole chunk; with few chunks (e.g. N = 16,
// V = 128256) the vocabulary is split into ranges and the per-range (max, Σexp, ...) states are
// merged in range order. The backward always splits the vocabulary (see logprobGatherBackward).
#include <algorithm>
#include <cmath>
#include <limits>

#include "../int_math.h"
#include "../kernels.h"
#include "../memory.h"
#include "gemm.h"
#include "parallel.h"
#include "softmax_math.h"

namespace rlhf::cpu {
namespace {

// Tiles aimed at per parallel step. A constant (not the thread count) so that the tiling, and with
// it the rounding, is the same on every machine.
constexpr int64_t kTargetTasks = 16;
// Logits per block buffer (cs x blockCols floats, 512 KiB): small enough to stay in L2/L3 between
// the sgemm that writes it and the pass that reads it.
constexpr int64_t kBlockFloats = int64_t{1} << 17;
constexpr int64_t kMinBlockCols = 64;
constexpr int64_t kMaxBlockCols = 2048;
// Narrowest vocabulary range worth a tile of its own.
constexpr int64_t kMinRangeCols = 256;


// Column ranges of about V / parts columns (a multiple of 64, at least kMinRangeCols).
int64_t rangeWidth(int64_t vocab, int64_t parts) {
  return std::max(kMinRangeCols, roundUp(ceilDiv(vocab, parts), 64));
}

// The token grid shared by the forward and the backward.
struct TokenChunks {
  ScratchBuffer<int32_t> rows;  // [M] row ids of the valid tokens, ascending
  int64_t valid = 0;            // M
  int64_t chunkRows = 0;        // cs
  int64_t chunks = 0;           // ceil(M / cs)
  int64_t blockCols = 0;
};

TokenChunks chunkValidTokens(const int32_t* targets, int64_t n, int32_t ignoreIndex, int64_t chunkSize) {
  TokenChunks t;
  for (int64_t i = 0; i < n; ++i) t.valid += targets[i] != ignoreIndex;
  if (t.valid == 0) return t;
  t.rows = ScratchBuffer<int32_t>(static_cast<size_t>(t.valid));
  int64_t k = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (targets[i] != ignoreIndex) t.rows[k++] = static_cast<int32_t>(i);
  }
  t.chunkRows = std::min(chunkSize, t.valid);
  t.chunks = ceilDiv(t.valid, t.chunkRows);
  t.blockCols = std::clamp(kBlockFloats / t.chunkRows / 64 * 64, kMinBlockCols, kMaxBlockCols);
  return t;
}

// Copies hidden rows rows[0, count) into a dense [count, D] buffer.
void gatherRows(const float* hidden, int64_t dim, const int32_t* rows, int64_t count, float* out) {
  for (int64_t i = 0; i < count; ++i) {
    const float* src = hidden + static_cast<int64_t>(rows[i]) * dim;
    std::copy(src, src + dim, out + i * dim);
  }
}

// One token's softmax statistics over the columns seen so far, relative to the running max m.
struct TokenState {
  float max;       // m (−inf before any column)
  int32_t argmax;  // first column holding m
  float target;    // z[target]; 0 until the target's column is seen (merging adds, see merge())
  double sumExp;   // Σ e^(z − m)
  double sumExpZ;  // Σ e^(z − m) · (z − m)   (entropy = log sumExp − sumExpZ / sumExp)
  double sumZ;     // Σ z                     (logitMean = sumZ / V)
};

constexpr TokenState kEmptyState{-std::numeric_limits<float>::infinity(), -1, 0.0f, 0.0, 0.0, 0.0};

// Re-expresses s relative to a larger max m: e^(z−s.max) = e^(z−m) · e^(s.max−m), and
// (z − s.max) = (z − m) + (m − s.max).
void rebase(TokenState& s, float m) {
  if (s.sumExp == 0.0) {
    s.max = m;
    return;
  }
  const double shift = static_cast<double>(s.max) - m;  // ≤ 0
  const double f = std::exp(shift);
  s.sumExpZ = f * (s.sumExpZ + shift * s.sumExp);
  s.sumExp *= f;
  s.max = m;
}

// Folds one block row z[0, cols) (vocabulary columns [v0, v0 + cols)) into s.
void accumulateBlock(TokenState& s, const float* z, int64_t cols, int64_t v0, int32_t target) {
  const float blockMax = rowMax(z, cols);
  if (blockMax > s.max) {
    rebase(s, blockMax);
    s.argmax = static_cast<int32_t>(v0 + firstIndexOf(z, cols, blockMax));
  }
  // Block sums in float32 (every e ≤ 1; blocks are ≤ kMaxBlockCols long), folded into float64.
  const ExpSums b = expSums(z, cols, s.max);
  s.sumExp += b.sumExp;
  s.sumExpZ += b.sumExpShifted;
  s.sumZ += b.sum;
  if (target >= v0 && target < v0 + cols) s.target = z[target - v0];
}

// a ← a ⊕ b, where b holds columns after a's (so a's argmax wins ties).
void merge(TokenState& a, const TokenState& b) {
  if (b.sumExp == 0.0) return;
  if (b.max > a.max) {
    rebase(a, b.max);
    a.argmax = b.argmax;
  }
  TokenState c = b;
  rebase(c, a.max);
  a.sumExp += c.sumExp;
  a.sumExpZ += c.sumExpZ;
  a.sumZ += b.sumZ;
  a.target += b.target;  // exactly one range saw the target; the others hold 0
}

}  // namespace

// Forward. Tiles: (chunk c, range s) for c < nC, s < S, where S = 1 when nC ≥ kTargetTasks and
// otherwise ceil(kTargetTasks / nC) vocabulary ranges (fewer for a small V). Each tile writes the
// states of its tokens for its range; a final pass merges a token's S states in range order.
//
// Scratch (bytes), with T threads, cs = min(chunkSize, M), bc = blockCols
// (= clamp(2^17 / cs, 64, 2048), rounded down to a multiple of 64):
//   4·M (row ids) + 40·S·M (states; S·M < (kTargetTasks + nC)·cs < 32·cs when S > 1)
//   + 4·T·cs·(D + bc) (gathered rows and one logit block per thread) + sgemm's own packing.
void logprobGather(const LogprobGatherArgs& p) {
  for (int64_t i = 0; i < p.n; ++i) {
    if (p.targets[i] != p.ignoreIndex) continue;
    p.logp[i] = 0.0f;
    p.lse[i] = 0.0f;
    if (p.entropy) p.entropy[i] = 0.0f;
    if (p.logitMean) p.logitMean[i] = 0.0f;
    if (p.argmax) p.argmax[i] = -1;
  }
  const TokenChunks tc = chunkValidTokens(p.targets, p.n, p.ignoreIndex, p.chunkSize);
  if (tc.valid == 0) return;
  const int64_t M = tc.valid, cs = tc.chunkRows, D = p.dim, V = p.vocab, bc = tc.blockCols;

  const int64_t wantedRanges = tc.chunks >= kTargetTasks ? 1 : ceilDiv(kTargetTasks, tc.chunks);
  const int64_t rangeCols = wantedRanges == 1 ? V : rangeWidth(V, wantedRanges);
  const int64_t ranges = ceilDiv(V, rangeCols);

  ScratchBuffer<TokenState> states(static_cast<size_t>(ranges * M));
  const int threads = numThreads();
  ScratchBuffer<float> hBuf(static_cast<size_t>(threads * cs * D));
  ScratchBuffer<float> zBuf(static_cast<size_t>(threads * cs * bc));

  parallelTasks(tc.chunks * ranges, [&](int64_t task, int thread) {
    const int64_t c = task / ranges, r = task % ranges;
    const int64_t first = c * cs, rows = std::min(cs, M - first);
    const int32_t* rowIds = tc.rows.data() + first;
    float* h = hBuf.data() + thread * cs * D;
    float* z = zBuf.data() + thread * cs * bc;
    gatherRows(p.hidden, D, rowIds, rows, h);
    TokenState* st = states.data() + r * M + first;
    std::fill(st, st + rows, kEmptyState);
    const int64_t colEnd = std::min(V, (r + 1) * rangeCols);
    for (int64_t v0 = r * rangeCols; v0 < colEnd; v0 += bc) {
      const int64_t cols = std::min(bc, colEnd - v0);
      // z [rows, cols] = H_c [rows, D] · W[v0 : v0 + cols]ᵀ / T
      sgemm(false, true, rows, cols, D, p.invTemperature, h, D, p.weight + v0 * D, D, 0.0f, z, cols);
      for (int64_t i = 0; i < rows; ++i) accumulateBlock(st[i], z + i * cols, cols, v0, p.targets[rowIds[i]]);
    }
  });

  parallelFor(M, 256, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      TokenState s = states[k];
      for (int64_t r = 1; r < ranges; ++r) merge(s, states[r * M + k]);
      const int64_t i = tc.rows[k];
      const double logSum = std::log(s.sumExp);
      const double lse = s.max + logSum;
      p.lse[i] = static_cast<float>(lse);
      p.logp[i] = static_cast<float>(s.target - lse);
      if (p.entropy) p.entropy[i] = static_cast<float>(logSum - s.sumExpZ / s.sumExp);
      if (p.logitMean) p.logitMean[i] = static_cast<float>(s.sumZ / static_cast<double>(V));
      if (p.argmax) p.argmax[i] = s.argmax;
    }
  });
}

// Backward. With p = e^(z − lse) and log p = z − lse, one token's logit gradient is
//   dz = dLogp·(onehot − p) − dEntropy·p·(log p + entropy),
// and dH = dz·W / T, dW += dzᵀ·H / T. Tiles are (chunk c, range r) over R ranges of about
// V / kTargetTasks columns. A tile recomputes its logit blocks, turns them into dz in place, adds
// dzᵀ·H_c into dW's rows of range r and accumulates dz·W into a [cs, D] buffer that it finally adds
// into the dH rows of chunk c.
//
// No races, no locks, no W-sized copies: the tiles run in rounds, and within a round no two tiles
// share a range (dW rows) or a dH destination. A chunk's dH has P destination slots: slot 0 is
// dHidden itself, slots 1..P−1 are partial buffers (P = 1 when nC ≥ kTargetTasks, else
// min(R, ceil(kTargetTasks / nC)), so small N still yields about kTargetTasks tiles per round; a
// round is one parallelTasks call). Range r = q·P + s writes slot s; in round k it processes chunk
// (q + k) mod L, L = max(nC, ceil(R / P)).
// So every (chunk, range) tile runs exactly once, and each dW range and each dH slot receives its
// contributions in an order fixed by (nC, R, P). The partial slots are added to dHidden in slot
// order at the end.
//
// Scratch (bytes), with T threads, cs, bc as in the forward:
//   4·M (row ids) + 4·(P − 1)·M·D (partial dH slots; (P − 1)·M ≤ kTargetTasks·cs)
//   + 4·T·cs·(2·D + bc) (gathered rows, dH accumulator and one logit block per thread)
//   + sgemm's own packing.
void logprobGatherBackward(const LogprobGatherBackwardArgs& p) {
  const int64_t D = p.dim, V = p.vocab;
  if (!p.accumulateDHidden) {
    parallelFor(p.n * D, 1 << 16, [&](int64_t b, int64_t e) { std::fill(p.dHidden + b, p.dHidden + e, 0.0f); });
  }
  const TokenChunks tc = chunkValidTokens(p.targets, p.n, p.ignoreIndex, p.chunkSize);
  if (tc.valid == 0) return;
  const int64_t M = tc.valid, cs = tc.chunkRows, nC = tc.chunks, bc = tc.blockCols;

  const int64_t rangeCols = rangeWidth(V, kTargetTasks);
  const int64_t R = ceilDiv(V, rangeCols);
  const int64_t P = nC >= kTargetTasks ? 1 : std::min(R, ceilDiv(kTargetTasks, nC));
  const int64_t rounds = std::max(nC, ceilDiv(R, P));

  ScratchBuffer<float> partial(static_cast<size_t>((P - 1) * M * D));
  std::fill(partial.data(), partial.data() + partial.size(), 0.0f);
  const int threads = numThreads();
  ScratchBuffer<float> hBuf(static_cast<size_t>(threads * cs * D));
  ScratchBuffer<float> dhBuf(static_cast<size_t>(threads * cs * D));
  ScratchBuffer<float> zBuf(static_cast<size_t>(threads * cs * bc));

  auto tile = [&](int64_t c, int64_t r, int64_t slot, int thread) {
    const int64_t first = c * cs, rows = std::min(cs, M - first);
    const int32_t* rowIds = tc.rows.data() + first;
    float* h = hBuf.data() + thread * cs * D;
    float* dh = dhBuf.data() + thread * cs * D;
    float* z = zBuf.data() + thread * cs * bc;
    gatherRows(p.hidden, D, rowIds, rows, h);
    const int64_t colBegin = r * rangeCols, colEnd = std::min(V, colBegin + rangeCols);
    for (int64_t v0 = colBegin; v0 < colEnd; v0 += bc) {
      const int64_t cols = std::min(bc, colEnd - v0);
      const float* wBlock = p.weight + v0 * D;
      sgemm(false, true, rows, cols, D, p.invTemperature, h, D, wBlock, D, 0.0f, z, cols);
      for (int64_t i = 0; i < rows; ++i) {
        const int32_t row = rowIds[i];
        const float lse = p.lse[row], g = p.dLogp[row];
        const float gEnt = p.dEntropy ? p.dEntropy[row] : 0.0f;
        const float ent = p.dEntropy ? p.entropy[row] : 0.0f;
        float* zi = z + i * cols;
        for (int64_t j = 0; j < cols; ++j) {
          const float logProb = zi[j] - lse;
          zi[j] = -fastExp(logProb) * (g + gEnt * (logProb + ent));
        }
        const int64_t t = p.targets[row];
        if (t >= v0 && t < v0 + cols) zi[t - v0] += g;
      }
      // dh [rows, D] (+)= dz [rows, cols] · W_b [cols, D] / T
      sgemm(false, false, rows, D, cols, p.invTemperature, z, cols, wBlock, D, v0 == colBegin ? 0.0f : 1.0f, dh, D);
      // dW_b [cols, D] += dzᵀ [cols, rows] · H_c [rows, D] / T
      if (p.dWeight) sgemm(true, false, cols, D, rows, p.invTemperature, z, cols, h, D, 1.0f, p.dWeight + v0 * D, D);
    }
    for (int64_t i = 0; i < rows; ++i) {
      float* dst = slot == 0 ? p.dHidden + static_cast<int64_t>(rowIds[i]) * D
                             : partial.data() + ((slot - 1) * M + first + i) * D;
      const float* src = dh + i * D;
      for (int64_t d = 0; d < D; ++d) dst[d] += src[d];
    }
  };

  for (int64_t k = 0; k < rounds; ++k) {
    parallelTasks(R, [&](int64_t r, int thread) {
      const int64_t c = (r / P + k) % rounds;
      if (c < nC) tile(c, r, r % P, thread);
    });
  }

  if (P > 1) {
    parallelFor(M, 16, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        float* dst = p.dHidden + static_cast<int64_t>(tc.rows[k]) * D;
        for (int64_t s = 1; s < P; ++s) {
          const float* src = partial.data() + ((s - 1) * M + k) * D;
          for (int64_t d = 0; d < D; ++d) dst[d] += src[d];
        }
      }
    });
  }
}

}  // namespace rlhf::cpu
