// Log-prob gathering through the lm_head on the GPU (kernels.h §8): per valid token i,
// z = H[i]·Wᵀ / T, logp = z[target] − logsumexp(z), and optionally the entropy, the mean logit and
// the argmax of softmax(z), and the backward. The [N, V] logits never reach global memory.
//
// Valid tokens. compactKernel lists the rows whose target is not ignoreIndex (M of them, in
// ascending order) and the count M in device memory; it also writes the ignored rows' forward
// outputs (0, argmax −1). The host never reads M: grids are sized for N tokens and blocks past M
// exit at once, so nothing waits for the GPU. Only valid tokens cost matrix work.
//
// Tiling (cuda/tile_mma.cuh): blocks compute 128 x 128 logit tiles (valid tokens x vocabulary
// columns) over the hidden dim D, bf16 on tensor cores with float accumulation, float32 with SIMT
// FMAs, and consume the tile from shared memory in a fused epilogue.
//
// chunkSize is accepted and ignored: it tunes the CPU kernel's cache blocking; the GPU chooses its
// own token tiles (128), token chunks and vocabulary ranges (below).
//
// Determinism: the tiling depends on (N, V, D) and on the GPU's SM count and occupancy, every
// partial result is combined in a fixed order and no atomics are used, so repeated calls on one GPU
// give bit-identical results (another GPU model may split the vocabulary differently and round
// differently).
#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>

#include "../src/int_math.h"
#include "device_buffer.cuh"
#include "runtime.cuh"
#include "scan.cuh"
#include "tile_mma.cuh"
#include "types.cuh"

namespace rlhf::cuda {
namespace {

using tile::kBM;
using tile::kBN;
using tile::kLdC;
using tile::Major;

constexpr float kInf = std::numeric_limits<float>::infinity();


// ---------------------------------------------------------------------------------------------
// Valid-token compaction: one block of 1024 threads walks the targets, 4096 per step; a block scan
// of the per-thread counts gives each valid row its slot, so `rows` keeps ascending order.

constexpr int kCompactThreads = 1024;
constexpr int kCompactPerThread = 4;

// The forward outputs of ignored tokens (all null in the backward).
struct IgnoredOutputs {
  float* logp;
  float* lse;
  float* entropy;
  float* logitMean;
  int32_t* argmax;
};

__global__ void __launch_bounds__(kCompactThreads)
    compactKernel(const int32_t* targets, int64_t n, int32_t ignoreIndex, int32_t* rows, int32_t* count,
                  IgnoredOutputs out) {
  __shared__ int32_t scratch[32];
  int32_t base = 0;
  for (int64_t start = 0; start < n; start += kCompactThreads * kCompactPerThread) {
    const int64_t first = start + static_cast<int64_t>(threadIdx.x) * kCompactPerThread;
    bool valid[kCompactPerThread];
    int32_t mine = 0;
#pragma unroll
    for (int j = 0; j < kCompactPerThread; ++j) {
      const int64_t i = first + j;
      valid[j] = i < n && targets[i] != ignoreIndex;
      mine += valid[j];
      if (i < n && !valid[j] && out.logp) {
        out.logp[i] = 0.0f;
        out.lse[i] = 0.0f;
        if (out.entropy) out.entropy[i] = 0.0f;
        if (out.logitMean) out.logitMean[i] = 0.0f;
        if (out.argmax) out.argmax[i] = -1;
      }
    }
    const BlockScan<int32_t> scan = blockExclusiveSum(mine, scratch);
    int32_t slot = base + scan.before;
#pragma unroll
    for (int j = 0; j < kCompactPerThread; ++j) {
      if (valid[j]) rows[slot++] = static_cast<int32_t>(first + j);
    }
    base += scan.total;
  }
  if (threadIdx.x == 0) *count = base;
}

void compactValidRows(const int32_t* targets, int64_t n, int32_t ignoreIndex, int32_t* rows, int32_t* count,
                      const IgnoredOutputs& out) {
  compactKernel<<<1, kCompactThreads, 0, stream()>>>(targets, n, ignoreIndex, rows, count, out);
  checkLaunch("logprobGather compactKernel");
}

// The number of valid tokens of the token chunk [chunkStart, chunkStart + chunkCap).
__device__ __forceinline__ int chunkRows(const int32_t* count, int chunkStart, int chunkCap) {
  return max(0, min(*count - chunkStart, chunkCap));
}

// ---------------------------------------------------------------------------------------------
// Online softmax statistics of one token over the columns seen so far, relative to the running
// max m (the CPU kernel's TokenState): float32 sums per tile (every e^(z−m) ≤ 1, ≤ 128 terms),
// added into float64 across tiles so that V ~ 10⁵ columns do not drift.
struct RowState {
  double sumExp;   // Σ e^(z − m)
  double sumExpZ;  // Σ e^(z − m)·(z − m)   (entropy = log sumExp − sumExpZ / sumExp)
  double sumZ;     // Σ z                   (logitMean = sumZ / V)
  float max;       // m (−inf before any column)
  float target;    // z[target] once its column is seen, else 0 (merging adds)
  int32_t argmax;  // the first column holding m
};

__device__ __forceinline__ RowState emptyState() { return RowState{0.0, 0.0, 0.0, -kInf, 0.0f, -1}; }

// Re-expresses s relative to a max m ≥ s.max: e^(z−s.max) = e^(z−m)·e^(s.max−m), and
// (z − s.max) = (z − m) + (s.max − m).
__device__ __forceinline__ void rebase(RowState& s, float m) {
  if (s.sumExp == 0.0) {
    s.max = m;
    return;
  }
  const float shift = s.max - m;  // ≤ 0
  const double f = expf(shift);
  s.sumExpZ = f * (s.sumExpZ + static_cast<double>(shift) * s.sumExp);
  s.sumExp *= f;
  s.max = m;
}

// a ← a ⊕ b for disjoint column sets; on equal maxima the smaller column wins (torch.argmax).
__device__ __forceinline__ void merge(RowState& a, const RowState& b) {
  if (b.sumExp == 0.0) return;
  const bool takeB = b.max > a.max || (b.max == a.max && b.argmax < a.argmax);
  const float m = fmaxf(a.max, b.max);
  rebase(a, m);
  RowState c = b;
  rebase(c, m);
  a.sumExp += c.sumExp;
  a.sumExpZ += c.sumExpZ;
  a.sumZ += c.sumZ;
  a.target += c.target;  // exactly one part saw the target; the others hold 0
  if (takeB) a.argmax = b.argmax;
}

// e^x: correctly rounded to ~1 ulp for float32 parity; the fast hardware approximation (relative
// error ~1e-6 for the |x| < 20 that matter) for bfloat16, where inputs carry 3 significant digits.
template <typename D>
__device__ __forceinline__ float expOf(float x) {
  if constexpr (std::is_same_v<D, float>) return expf(x);
  else return __expf(x);
}

// Folds z[0, count) (tile columns col0 .. col0 + count − 1, count ≤ kCols, possibly ≤ 0) into s.
// Two passes over shared memory: the max (first index on ties), then the sums relative to the
// updated running max, four independent partial sums for instruction-level parallelism.
template <typename D, int kCols, bool kFull>
__device__ __forceinline__ void foldColumns(RowState& s, const float* z, int count, int col0) {
  float tileMax = -kInf;
  int at = 0;
#pragma unroll 8
  for (int q = 0; q < kCols; q += 4) {
    const float4 v = *reinterpret_cast<const float4*>(z + q);
    const float x[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      if ((kFull || q + c < count) && x[c] > tileMax) {
        tileMax = x[c];
        at = q + c;
      }
    }
  }
  if (tileMax > s.max) {
    rebase(s, tileMax);
    s.argmax = col0 + at;
  }
  float sumExp[4] = {}, sumExpZ[4] = {}, sumZ[4] = {};
#pragma unroll 8
  for (int q = 0; q < kCols; q += 4) {
    const float4 v = *reinterpret_cast<const float4*>(z + q);
    const float x[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      if (kFull || q + c < count) {
        const float d = x[c] - s.max;
        const float e = expOf<D>(d);
        sumExp[c] += e;
        sumExpZ[c] = fmaf(e, d, sumExpZ[c]);
        sumZ[c] += x[c];
      }
    }
  }
  s.sumExp += static_cast<double>((sumExp[0] + sumExp[1]) + (sumExp[2] + sumExp[3]));
  s.sumExpZ += static_cast<double>((sumExpZ[0] + sumExpZ[1]) + (sumExpZ[2] + sumExpZ[3]));
  s.sumZ += static_cast<double>((sumZ[0] + sumZ[1]) + (sumZ[2] + sumZ[3]));
}

// ---------------------------------------------------------------------------------------------
// Forward.
//
// Grid (⌈N/128⌉ token tiles, S vocabulary splits). Block (t, s) holds token tile t (rows
// rows[128t .. 128t + 127] of H, gathered) and walks the vocabulary tiles of split s: per tile
// the k loop over D gives z = H_t·W_vᵀ/T [128, 128] in shared memory, and each token's thread(s)
// fold their row of it into registers (bf16: thread r owns row r, all 128 columns; float32:
// threads r and r + 128 own row r's columns 0..63 and 64..127, merged at the end). The block
// writes one RowState per token for its split; finishKernel merges a token's S states in split
// order and writes the outputs. Consecutive blocks are the token tiles of one split, so the
// blocks resident at a time stream the same W tiles and W is read from HBM about once per wave.
//
// Global memory traffic: H and W tiles are re-read per (token tile, vocabulary tile) pair, i.e.
// (⌈M/128⌉·V + ⌈V/128⌉·M)·D elements served mostly by L2 (a GEMM's traffic for 128 x 128 tiles);
// from HBM about V·D (W) + M·D (H) elements, plus 2·40·S·M bytes of states and 20·N of outputs.
// Scratch: 4·N (row ids) + 40·S·N bytes (states), with S·N·40 ≤ max(kStateBudget, 40·N)
// (S is capped by the budget): O(N·splits), independent of V.

template <typename D>
struct ForwardParams {
  tile::Operand<D> hidden;  // [N, D] through the row map rows; its extent is set from *count
  tile::Operand<D> weight;  // [V, D]
  const int32_t* targets;   // [N]
  const int32_t* rows;      // [M] valid row ids
  const int32_t* count;     // M
  float invTemperature;
  int vocab;
  int tilesPerSplit;        // vocabulary tiles per split (the last split may have fewer)
  int64_t stateStride;      // N: states of split s start at s·N
  RowState* states;         // [S, N], the first M of each split written
};

template <typename D>
__global__ void __launch_bounds__(tile::Config<D>::kThreads) forwardKernel(ForwardParams<D> p) {
  constexpr int kThreads = tile::Config<D>::kThreads;
  constexpr int kParts = kThreads / kBM;  // threads per token row in the fold
  constexpr int kCols = kBN / kParts;     // columns of a tile per thread
  extern __shared__ __align__(128) unsigned char smem[];
  float* sC = reinterpret_cast<float*>(smem);

  const int valid = *p.count;
  const int m0 = static_cast<int>(blockIdx.x) * kBM;
  if (m0 >= valid) return;
  tile::Operand<D> hidden = p.hidden;
  hidden.rows = valid;
  const int r = static_cast<int>(threadIdx.x) % kBM;
  const int c0 = static_cast<int>(threadIdx.x) / kBM * kCols;
  const bool rowIn = m0 + r < valid;
  const int target = rowIn ? p.targets[p.rows[m0 + r]] : -1;

  RowState s = emptyState();
  tile::Tile<D, Major::K, Major::K> acc;
  const int vocabTiles = static_cast<int>(ceilDiv(p.vocab, kBN));
  const int tBegin = static_cast<int>(blockIdx.y) * p.tilesPerSplit;
  const int tEnd = min(vocabTiles, tBegin + p.tilesPerSplit);
  for (int t = tBegin; t < tEnd; ++t) {
    const int n0 = t * kBN;
    tile::mainloop<D, Major::K, Major::K>(smem, acc, hidden, p.weight, m0, n0, 0, p.hidden.cols);
    acc.store(sC, p.invTemperature);
    __syncthreads();
    if (rowIn) {
      const int col0 = n0 + c0, count = min(kCols, p.vocab - col0);
      const float* z = sC + r * kLdC + c0;
      if (count == kCols) foldColumns<D, kCols, true>(s, z, count, col0);
      else if (count > 0) foldColumns<D, kCols, false>(s, z, count, col0);
      if (target >= col0 && target < col0 + count) s.target = z[target - col0];
    }
    __syncthreads();  // the next tile's k loop overwrites sC
  }
  if constexpr (kParts == 2) {
    RowState* exchange = reinterpret_cast<RowState*>(smem);  // free: the loop ended on a barrier
    if (static_cast<int>(threadIdx.x) >= kBM) exchange[r] = s;
    __syncthreads();
    if (static_cast<int>(threadIdx.x) < kBM) merge(s, exchange[r]);
  }
  if (rowIn && static_cast<int>(threadIdx.x) < kBM) p.states[blockIdx.y * p.stateStride + m0 + r] = s;
}

// One thread per valid token: merges its S split states in split order and writes the outputs
// (the float64 finish of the CPU kernel).
__global__ void finishKernel(const RowState* states, int splits, int64_t stateStride, const int32_t* count,
                             const int32_t* rows, int64_t vocab, float* logp, float* lse, float* entropy,
                             float* logitMean, int32_t* argmax) {
  const int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (k >= *count) return;
  RowState s = states[k];
  for (int split = 1; split < splits; ++split) merge(s, states[split * stateStride + k]);
  const int64_t i = rows[k];
  const double logSum = log(s.sumExp);
  const double total = s.max + logSum;
  lse[i] = static_cast<float>(total);
  logp[i] = static_cast<float>(s.target - total);
  if (entropy) entropy[i] = static_cast<float>(logSum - s.sumExpZ / s.sumExp);
  if (logitMean) logitMean[i] = static_cast<float>(s.sumZ / static_cast<double>(vocab));
  if (argmax) argmax[i] = s.argmax;
}

// ---------------------------------------------------------------------------------------------
// Backward. With p = e^(z − lse) and log p = z − lse,
//   dz = dLogp·(onehot − p) − dEntropy·p·(log p + entropy),  dH = dz·W / T,  dW += dzᵀ·H / T.
// dH and dW are GEMMs whose output dimension is D (up to 8192), so no block can hold a token's or
// a vocabulary row's gradient while it walks the other dimension: the logit gradient is
// materialised, but only per (token chunk x vocabulary range) block, never [N, V]. Per chunk of
// up to kMaxChunkTokens valid tokens and per vocabulary range of Vr columns:
//   1. logitGradKernel: recompute z for the chunk x range (the forward's k loop) and write
//      dz/T as T into the [chunk, Vr] buffer (bf16 for bf16: standard mixed-precision gradients).
//   2. gemmKernel (dH): partial[s] (+)= dz[:, split s of the range] · W[split s rows], split-K over
//      the range when the chunk's [chunk, D] output has too few tiles to fill the GPU. Each split
//      s owns its float32 [chunk, D] partial buffer (overwritten by range 0, accumulated by the
//      later ranges, all in stream order): no races, no atomics.
//   3. gemmKernel (dW, when wanted): dW[range] += dzᵀ · H[chunk]: each block owns a 128 x 128 tile
//      of dW rows of its range and sums over the chunk's tokens itself: race-free, no atomics.
// After the chunk's ranges, scatterKernel adds the partial buffers in split order and writes or
// accumulates the chunk's dHidden rows (float32 sums, rounded once to T). Ignored rows of dHidden
// are zeroed first unless accumulating.
//
// FLOP: 3 x the forward's (recompute, dH, dW). Global memory traffic per chunk (mc tokens) and
// range (vr columns): step 1 as the forward for that block + mc·vr·sizeof(T) written; step 2 reads
// dz and W's range rows (L2-tiled), read-modify-writes S·mc·D floats; step 3 reads dz and H,
// read-modify-writes vr·D floats of dW (so dW is touched ⌈M/chunk⌉ times in all).
// Scratch: 4·N + chunk·Vr·sizeof(T) (≤ kDzBudget, "chunk x tile") + S·chunk·D·4
// (≤ max(kPartialBudget, chunk·D·4)).

// Every valid token's backward inputs, staged in shared memory per token tile.
struct RowGradInputs {
  float lse[kBM], dLogp[kBM], dEntropy[kBM], entropy[kBM];
  int32_t target[kBM];  // relative to the range's first column
};

template <typename D>
struct LogitGradParams {
  tile::Operand<D> hidden;  // [N, D] through the chunk's row map; extent set from the count
  tile::Operand<D> weight;  // the range's rows of W: [vr, D]
  const int32_t* targets;
  const int32_t* rows;      // the chunk's valid row ids (rows + chunkStart)
  const int32_t* count;
  int chunkStart, chunkCap;
  const float* lse;
  const float* entropy;
  const float* dLogp;
  const float* dEntropy;    // null: no entropy term
  float invTemperature;
  int rangeStart, rangeCols;
  D* dz;                    // [chunkCap, ldz]
  int64_t ldz;              // a multiple of 8
};

__device__ __forceinline__ void storeFour(float* p, float a, float b, float c, float d) {
  *reinterpret_cast<float4*>(p) = make_float4(a, b, c, d);
}
__device__ __forceinline__ void storeFour(__nv_bfloat16* p, float a, float b, float c, float d) {
  reinterpret_cast<__nv_bfloat162*>(p)[0] = __floats2bfloat162_rn(a, b);
  reinterpret_cast<__nv_bfloat162*>(p)[1] = __floats2bfloat162_rn(c, d);
}

// Grid (⌈chunkCap/128⌉ token tiles, ⌈vr/128⌉ vocabulary tiles); token tiles vary fastest, so the
// resident blocks share W tiles in L2. Epilogue: warp w takes rows w, w + warps, ...; lane l
// reads columns 4l..4l+3 (a float4, conflict-free) and writes their 4 gradients (8 or 16 bytes).
template <typename D>
__global__ void __launch_bounds__(tile::Config<D>::kThreads) logitGradKernel(LogitGradParams<D> p) {
  constexpr int kWarps = tile::Config<D>::kThreads / 32;
  extern __shared__ __align__(128) unsigned char smem[];
  float* sC = reinterpret_cast<float*>(smem);
  RowGradInputs& in = *reinterpret_cast<RowGradInputs*>(smem + tile::Layout<D>::kSmemBytes);

  const int mc = chunkRows(p.count, p.chunkStart, p.chunkCap);
  const int m0 = static_cast<int>(blockIdx.x) * kBM;
  if (m0 >= mc) return;
  tile::Operand<D> hidden = p.hidden;
  hidden.rows = mc;
  for (int i = static_cast<int>(threadIdx.x); i < kBM && m0 + i < mc; i += tile::Config<D>::kThreads) {
    const int32_t row = p.rows[m0 + i];
    in.target[i] = p.targets[row] - p.rangeStart;
    in.lse[i] = p.lse[row];
    in.dLogp[i] = p.dLogp[row];
    in.dEntropy[i] = p.dEntropy ? p.dEntropy[row] : 0.0f;
    in.entropy[i] = p.dEntropy ? p.entropy[row] : 0.0f;
  }  // visible after the k loop's barriers

  const int n0 = static_cast<int>(blockIdx.y) * kBN;
  tile::Tile<D, Major::K, Major::K> acc;
  tile::mainloop<D, Major::K, Major::K>(smem, acc, hidden, p.weight, m0, n0, 0, p.hidden.cols);
  acc.store(sC, p.invTemperature);
  __syncthreads();

  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int col = n0 + 4 * lane;  // within the range
  if (col >= p.rangeCols) return;  // no barrier follows
  for (int rr = warp; rr < kBM && m0 + rr < mc; rr += kWarps) {
    const float4 z4 = *reinterpret_cast<const float4*>(sC + rr * kLdC + 4 * lane);
    const float z[4] = {z4.x, z4.y, z4.z, z4.w};
    const float lse = in.lse[rr], g = in.dLogp[rr], gEnt = in.dEntropy[rr], ent = in.entropy[rr];
    const int target = in.target[rr];
    float dz[4];
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const float logProb = z[c] - lse;
      float grad = -expOf<D>(logProb) * (g + gEnt * (logProb + ent));
      if (col + c == target) grad += g;
      dz[c] = grad * p.invTemperature;
    }
    D* out = p.dz + static_cast<int64_t>(m0 + rr) * p.ldz + col;
    if (col + 4 <= p.rangeCols) {
      storeFour(out, dz[0], dz[1], dz[2], dz[3]);
    } else {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        if (col + c < p.rangeCols) out[c] = fromFloat<D>(dz[c]);
      }
    }
  }
}

// C (+)= A·B for the backward's two products, float32 C. The token dimension is A's storage row
// dimension (dz rows; for dW also B's, H's rows) and its extent comes from the device count.
// Grid (⌈N/128⌉ column tiles, ⌈M/128⌉ row tiles, splits): split z sums k in
// [z·kPerSplit, (z+1)·kPerSplit) into C + z·splitStride.
template <typename D>
struct GemmParams {
  tile::Operand<D> a, b;
  const int32_t* count;
  int chunkStart, chunkCap;
  int kPerSplit;            // a multiple of kBK
  float* c;
  int64_t ldc, splitStride;
  bool cVec;                // float4 access to C: 16-byte aligned and ldc a multiple of 4
  bool accumulate;          // C += A·B, else C = A·B
};

template <typename D, Major MA, Major MB>
__global__ void __launch_bounds__(tile::Config<D>::kThreads) gemmKernel(GemmParams<D> p) {
  constexpr int kWarps = tile::Config<D>::kThreads / 32;
  extern __shared__ __align__(128) unsigned char smem[];
  float* sC = reinterpret_cast<float*>(smem);

  const int mc = chunkRows(p.count, p.chunkStart, p.chunkCap);
  p.a.rows = mc;
  if constexpr (MA == Major::MN) p.b.rows = mc;
  const int mExtent = MA == Major::K ? p.a.rows : p.a.cols;
  const int kExtent = MA == Major::K ? p.a.cols : p.a.rows;
  const int nExtent = MB == Major::K ? p.b.rows : p.b.cols;
  const int m0 = static_cast<int>(blockIdx.y) * kBM, n0 = static_cast<int>(blockIdx.x) * kBN;
  const int kBegin = static_cast<int>(blockIdx.z) * p.kPerSplit;
  const int kEnd = min(kExtent, kBegin + p.kPerSplit);
  if (m0 >= mExtent || (kBegin >= kEnd && p.accumulate)) return;

  tile::Tile<D, MA, MB> acc;
  tile::mainloop<D, MA, MB>(smem, acc, p.a, p.b, m0, n0, kBegin, kEnd);
  acc.store(sC, 1.0f);
  __syncthreads();

  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int n = n0 + 4 * lane;
  if (n >= nExtent) return;  // no barrier follows
  float* c = p.c + blockIdx.z * p.splitStride;
  for (int rr = warp; rr < kBM && m0 + rr < mExtent; rr += kWarps) {
    const float4 v = *reinterpret_cast<const float4*>(sC + rr * kLdC + 4 * lane);
    float* dst = c + static_cast<int64_t>(m0 + rr) * p.ldc + n;
    if (p.cVec && n + 4 <= nExtent) {
      float4 out = v;
      if (p.accumulate) {
        const float4 old = *reinterpret_cast<const float4*>(dst);
        out = make_float4(old.x + v.x, old.y + v.y, old.z + v.z, old.w + v.w);
      }
      *reinterpret_cast<float4*>(dst) = out;
    } else {
      const float x[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (n + e < nExtent) dst[e] = p.accumulate ? dst[e] + x[e] : x[e];
      }
    }
  }
}

// dHidden[rows[k]] (+)= Σ_s partial[s][k] (split order) for the chunk's valid tokens k.
template <typename D>
__global__ void scatterKernel(const float* partial, int splits, int64_t splitStride, const int32_t* count,
                              int chunkStart, int chunkCap, const int32_t* rows, int64_t dim, D* dHidden,
                              bool accumulate) {
  const int64_t total = static_cast<int64_t>(chunkRows(count, chunkStart, chunkCap)) * dim;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = 0.0f;
    for (int s = 0; s < splits; ++s) v += partial[s * splitStride + e];
    const int64_t k = e / dim;
    D* dst = dHidden + static_cast<int64_t>(rows[k]) * dim + (e - k * dim);
    *dst = fromFloat<D>(accumulate ? toFloat(*dst) + v : v);
  }
}

template <typename D>
__global__ void zeroIgnoredRowsKernel(const int32_t* targets, int64_t n, int64_t dim, int32_t ignoreIndex,
                                      D* dHidden) {
  const int64_t total = n * dim;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (targets[e / dim] == ignoreIndex) dHidden[e] = fromFloat<D>(0.0f);
  }
}

// ---------------------------------------------------------------------------------------------
// Host side: launch geometry.

// Scratch budgets (bytes). Forward split states; the backward's logit-gradient block; the
// backward's dH partial buffers.
constexpr int64_t kStateBudget = int64_t{16} << 20;
constexpr int64_t kDzBudget = int64_t{64} << 20;
constexpr int64_t kPartialBudget = int64_t{64} << 20;
// Most valid tokens per backward chunk: with D = 4096 one chunk's float32 dH is 64 MiB.
constexpr int64_t kMaxChunkTokens = 4096;
constexpr int64_t kMaxGridY = 65535;
constexpr unsigned kElementwiseThreads = 256;
constexpr unsigned kMaxElementwiseBlocks = 65536;

// Opts a tiled kernel into its dynamic shared memory (above the 48 KiB default) and returns how
// many of its blocks the GPU runs at once.
template <typename Kernel>
int prepareTiledKernel(Kernel kernel, int threads, int smemBytes, const char* name) {
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smemBytes), name);
  int perSm = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perSm, kernel, threads, smemBytes), name);
  if (perSm < 1) throw CudaError(std::string(name) + ": does not fit on this GPU's multiprocessors");
  return perSm * multiprocessorCount();
}

// The resident-block count of each tiled kernel, computed once per process.
template <typename D>
int forwardResident() {
  static const int n = prepareTiledKernel(forwardKernel<D>, tile::Config<D>::kThreads,
                                          tile::Layout<D>::kSmemBytes, "logprobGather forwardKernel");
  return n;
}
template <typename D>
constexpr int kLogitGradSmem = tile::Layout<D>::kSmemBytes + static_cast<int>(sizeof(RowGradInputs));
template <typename D>
void prepareLogitGrad() {
  static const int n = prepareTiledKernel(logitGradKernel<D>, tile::Config<D>::kThreads, kLogitGradSmem<D>,
                                          "logprobGatherBackward logitGradKernel");
  (void)n;
}
template <typename D, Major MA, Major MB>
int gemmResident() {
  static const int n = prepareTiledKernel(gemmKernel<D, MA, MB>, tile::Config<D>::kThreads,
                                          tile::Layout<D>::kSmemBytes, "logprobGatherBackward gemmKernel");
  return n;
}

// Splits S of the vocabulary for the forward: among S ≤ maxSplits with every split non-empty, the
// one minimising waves · tiles per split = ⌈tokenTiles·S / resident⌉ · ⌈vocabTiles / S⌉ (the time
// in tile steps when the GPU runs `resident` blocks at once), the fewest splits on ties.
struct SplitPlan {
  int splits, tilesPerSplit;
};
SplitPlan planSplits(int64_t n, int64_t vocab, int resident) {
  const int64_t tokenTiles = ceilDiv(n, kBM), vocabTiles = ceilDiv(vocab, kBN);
  const int64_t byBudget = std::max<int64_t>(1, kStateBudget / (n * static_cast<int64_t>(sizeof(RowState))));
  const int64_t maxSplits = std::min({vocabTiles, kMaxGridY, byBudget});
  SplitPlan best{1, static_cast<int>(vocabTiles)};
  int64_t bestCost = ceilDiv(tokenTiles, resident) * vocabTiles;
  for (int64_t s = 2; s <= maxSplits; ++s) {
    const int64_t per = ceilDiv(vocabTiles, s);
    if (ceilDiv(vocabTiles, per) != s) continue;  // some split would be empty
    const int64_t cost = ceilDiv(tokenTiles * s, resident) * per;
    if (cost < bestCost) {
      bestCost = cost;
      best = {static_cast<int>(s), static_cast<int>(per)};
    }
  }
  return best;
}

void checkDim(int64_t dim) {
  if (dim > INT_MAX) throw CudaError("logprobGather: the hidden size must be below 2^31 on the GPU");
}

}  // namespace

template <typename T>
void logprobGather(const LogprobGatherArgsT<T>& p) {
  using D = DeviceType<T>;
  if (p.n == 0) return;
  checkDim(p.dim);
  DeviceBuffer<int32_t> rows(static_cast<size_t>(p.n)), count(1);
  compactValidRows(p.targets, p.n, p.ignoreIndex, rows.data(), count.data(),
                   IgnoredOutputs{p.logp, p.lse, p.entropy, p.logitMean, p.argmax});

  const int dim = static_cast<int>(p.dim), vocab = static_cast<int>(p.vocab);
  const SplitPlan plan = planSplits(p.n, p.vocab, forwardResident<D>());
  DeviceBuffer<RowState> states(static_cast<size_t>(plan.splits * p.n));
  ForwardParams<D> fp{};
  fp.hidden = tile::makeOperand(devicePtr(p.hidden), p.dim, rows.data(), 0, dim);
  fp.weight = tile::makeOperand(devicePtr(p.weight), p.dim, nullptr, vocab, dim);
  fp.targets = p.targets;
  fp.rows = rows.data();
  fp.count = count.data();
  fp.invTemperature = p.invTemperature;
  fp.vocab = vocab;
  fp.tilesPerSplit = plan.tilesPerSplit;
  fp.stateStride = p.n;
  fp.states = states.data();
  const dim3 grid(static_cast<unsigned>(ceilDiv(p.n, kBM)), static_cast<unsigned>(plan.splits));
  forwardKernel<D><<<grid, tile::Config<D>::kThreads, tile::Layout<D>::kSmemBytes, stream()>>>(fp);
  checkLaunch("logprobGather forwardKernel");

  finishKernel<<<blocksFor(p.n, kElementwiseThreads), kElementwiseThreads, 0, stream()>>>(
      states.data(), plan.splits, p.n, count.data(), rows.data(), p.vocab, p.logp, p.lse, p.entropy, p.logitMean,
      p.argmax);
  checkLaunch("logprobGather finishKernel");
}

template <typename T>
void logprobGatherBackward(const LogprobGatherBackwardArgsT<T>& p) {
  using D = DeviceType<T>;
  if (p.n == 0 || p.dim == 0) return;  // nothing to write
  checkDim(p.dim);
  D* dHidden = devicePtr(p.dHidden);
  const unsigned elementwiseBlocks =
      std::min(blocksFor(p.n * p.dim, kElementwiseThreads), kMaxElementwiseBlocks);
  if (!p.accumulateDHidden) {
    zeroIgnoredRowsKernel<D><<<elementwiseBlocks, kElementwiseThreads, 0, stream()>>>(p.targets, p.n, p.dim,
                                                                                      p.ignoreIndex, dHidden);
    checkLaunch("logprobGatherBackward zeroIgnoredRowsKernel");
  }
  DeviceBuffer<int32_t> rows(static_cast<size_t>(p.n)), count(1);
  compactValidRows(p.targets, p.n, p.ignoreIndex, rows.data(), count.data(), IgnoredOutputs{});

  constexpr int kThreads = tile::Config<D>::kThreads, kBK = tile::Config<D>::kBK;
  constexpr int kSmem = tile::Layout<D>::kSmemBytes;
  const int dim = static_cast<int>(p.dim);
  // Token chunk (its float32 dH within the partial budget), vocabulary range (the chunk's logit
  // gradients within the dz budget, and ≤ 65535 tiles for the grid).
  const int chunkCap = static_cast<int>(std::min(
      p.n, std::clamp<int64_t>(kPartialBudget / (p.dim * 4), kBM, kMaxChunkTokens)));
  const int64_t rangeCols = std::clamp<int64_t>(kDzBudget / static_cast<int64_t>(sizeof(D)) / chunkCap / kBN * kBN,
                                                kBN, std::min(roundUp(p.vocab, kBN), kMaxGridY * kBN));
  const int64_t ldz = roundUp(rangeCols, 8);
  // dH split-K: enough blocks for two waves, each split a whole number of k slices.
  const int64_t outTiles = ceilDiv(chunkCap, kBM) * ceilDiv(p.dim, kBN);
  const int64_t slices = ceilDiv(rangeCols, kBK);
  const int64_t maxSplits = std::min(
      {slices, kMaxGridY, std::max<int64_t>(1, kPartialBudget / (int64_t{chunkCap} * p.dim * 4))});
  const int64_t wanted = ceilDiv(2 * int64_t{gemmResident<D, Major::K, Major::MN>()}, outTiles);
  const int64_t kPerSplit = ceilDiv(slices, std::clamp<int64_t>(wanted, 1, maxSplits)) * kBK;
  const int splits = static_cast<int>(ceilDiv(rangeCols, kPerSplit));
  if (p.dWeight) gemmResident<D, Major::MN, Major::MN>();
  prepareLogitGrad<D>();

  DeviceBuffer<D> dz(static_cast<size_t>(chunkCap * ldz));
  DeviceBuffer<float> partial(static_cast<size_t>(splits) * chunkCap * p.dim);
  const D* hidden = devicePtr(p.hidden);
  const D* weight = devicePtr(p.weight);
  const bool dWeightVec = reinterpret_cast<uintptr_t>(p.dWeight) % 16 == 0 && p.dim % 4 == 0;

  for (int64_t chunkStart = 0; chunkStart < p.n; chunkStart += chunkCap) {
    const int32_t* chunkRowIds = rows.data() + chunkStart;
    const tile::Operand<D> chunkHidden = tile::makeOperand(hidden, p.dim, chunkRowIds, 0, dim);
    for (int64_t rangeStart = 0; rangeStart < p.vocab; rangeStart += rangeCols) {
      const int vr = static_cast<int>(std::min(rangeCols, p.vocab - rangeStart));
      const tile::Operand<D> rangeWeight = tile::makeOperand(weight + rangeStart * p.dim, p.dim, nullptr, vr, dim);
      // dz as A: K-major for dH (rows = tokens, k = columns), MN-major for dW (k = tokens, m = columns).
      const tile::Operand<D> dzOperand = tile::makeOperand<D>(dz.data(), ldz, nullptr, 0, vr);

      LogitGradParams<D> lp{};
      lp.hidden = chunkHidden;
      lp.weight = rangeWeight;
      lp.targets = p.targets;
      lp.rows = chunkRowIds;
      lp.count = count.data();
      lp.chunkStart = static_cast<int>(chunkStart);
      lp.chunkCap = chunkCap;
      lp.lse = p.lse;
      lp.entropy = p.entropy;
      lp.dLogp = p.dLogp;
      lp.dEntropy = p.dEntropy;
      lp.invTemperature = p.invTemperature;
      lp.rangeStart = static_cast<int>(rangeStart);
      lp.rangeCols = vr;
      lp.dz = dz.data();
      lp.ldz = ldz;
      logitGradKernel<D><<<dim3(static_cast<unsigned>(ceilDiv(chunkCap, kBM)), static_cast<unsigned>(ceilDiv(vr, kBN))),
                           kThreads, kLogitGradSmem<D>, stream()>>>(lp);
      checkLaunch("logprobGatherBackward logitGradKernel");

      GemmParams<D> hp{};
      hp.a = dzOperand;
      hp.b = rangeWeight;  // MN-major: rows = k (columns of the range), contiguous = D
      hp.count = count.data();
      hp.chunkStart = static_cast<int>(chunkStart);
      hp.chunkCap = chunkCap;
      hp.kPerSplit = static_cast<int>(kPerSplit);
      hp.c = partial.data();
      hp.ldc = p.dim;
      hp.splitStride = int64_t{chunkCap} * p.dim;
      hp.cVec = p.dim % 4 == 0;
      hp.accumulate = rangeStart > 0;
      gemmKernel<D, Major::K, Major::MN>
          <<<dim3(static_cast<unsigned>(ceilDiv(p.dim, kBN)), static_cast<unsigned>(ceilDiv(chunkCap, kBM)),
                  static_cast<unsigned>(splits)),
             kThreads, kSmem, stream()>>>(hp);
      checkLaunch("logprobGatherBackward gemmKernel (dHidden)");

      if (p.dWeight) {
        GemmParams<D> wp{};
        wp.a = dzOperand;     // MN-major: rows = k (tokens), contiguous = m (columns of the range)
        wp.b = chunkHidden;   // MN-major: rows = k (tokens, gathered), contiguous = D
        wp.count = count.data();
        wp.chunkStart = static_cast<int>(chunkStart);
        wp.chunkCap = chunkCap;
        wp.kPerSplit = static_cast<int>(roundUp(chunkCap, kBK));
        wp.c = p.dWeight + rangeStart * p.dim;
        wp.ldc = p.dim;
        wp.splitStride = 0;
        wp.cVec = dWeightVec;
        wp.accumulate = true;
        gemmKernel<D, Major::MN, Major::MN>
            <<<dim3(static_cast<unsigned>(ceilDiv(p.dim, kBN)), static_cast<unsigned>(ceilDiv(vr, kBM)), 1),
               kThreads, kSmem, stream()>>>(wp);
        checkLaunch("logprobGatherBackward gemmKernel (dWeight)");
      }
    }
    scatterKernel<D><<<std::min(blocksFor(int64_t{chunkCap} * p.dim, kElementwiseThreads), kMaxElementwiseBlocks),
                       kElementwiseThreads, 0, stream()>>>(partial.data(), splits, int64_t{chunkCap} * p.dim,
                                                           count.data(), static_cast<int>(chunkStart), chunkCap,
                                                           chunkRowIds, p.dim, dHidden, p.accumulateDHidden);
    checkLaunch("logprobGatherBackward scatterKernel");
  }
}

template void logprobGather<float>(const LogprobGatherArgsT<float>&);
template void logprobGather<bf16>(const LogprobGatherArgsT<bf16>&);
template void logprobGatherBackward<float>(const LogprobGatherBackwardArgsT<float>&);
template void logprobGatherBackward<bf16>(const LogprobGatherBackwardArgsT<bf16>&);

}  // namespace rlhf::cuda
