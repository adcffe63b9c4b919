// Attention backward on the GPU (kernels.h §5), FlashAttention-2 style: P is recomputed from the
// saved lse instead of being stored, and no [T, S] matrix ever exists. With Di = rowsum(dO ∘ O):
//   P = exp(scale·Q·Kᵀ − lse) on the visible keys,  dP = dO·Vᵀ,  dS = P ∘ (dP − Di),
//   dV = Pᵀ·dO,  dK = scale·dSᵀ·Q,  dQ = scale·dS·K.
// Three launches, every output element written by exactly one thread (race-free, deterministic,
// and dQ, dK, dV are overwritten without a zeroing pass):
//   rowDotKernel   Di, one warp per query row (float32 scratch [B, Hq, T]);
//   dQ kernel      one block per (b, query head, query tile), looping over the visible key tiles;
//   dK/dV kernel   one block per (b, kv head, key tile), looping over the group's query heads and
//                  the query tiles that see the key tile, owning its dK and dV rows (so GQA needs
//                  no atomics).
// The dQ kernel recomputes S and dP (a single kernel with float atomics into a dQ accumulator would
// save those two products, at the price of a non-deterministic summation order).
// Each of the two main kernels comes in a bf16 tensor-core version (D ≤ 128, zero-padded to 64 or
// 128) and a SIMT version (float32 for every D, bf16 for D > 128).
#include "attention_common.cuh"
#include "device_buffer.cuh"
#include "reduce.cuh"

namespace rlhf::cuda {
namespace {

using namespace attn;

template <typename D>
struct BackwardParams {
  const D* q;
  const D* k;
  const D* v;
  const D* dOut;
  const float* lse;     // [B, Hq, T]
  const float* rowDot;  // Di [B, Hq, T]
  D* dQ;
  D* dK;
  D* dV;
  Geometry geo;
  bool vec;  // rowsVectorizable(q, k, v, dOut, dQ, dK, dV)
};

// Di[b, h, t] = Σ_d dO[b, t, h, d] · O[b, t, h, d]. One warp per row of q's layout, 8 per block.
template <typename D>
__global__ void __launch_bounds__(256) rowDotKernel(const D* out, const D* dOut, float* rowDot, int64_t rows,
                                                    int64_t seqQ, int64_t headsQ, int64_t dim) {
  const int64_t row = blockIdx.x * int64_t{8} + (threadIdx.x >> 5);
  if (row >= rows) return;  // whole warps leave together
  const int lane = threadIdx.x & 31;
  const D* o = out + row * dim;
  const D* d = dOut + row * dim;
  float sum = 0.0f;
  for (int64_t i = lane; i < dim; i += 32) sum = fmaf(toFloat(o[i]), toFloat(d[i]), sum);
  sum = warpSum(sum);
  if (lane == 0) {
    const int64_t h = row % headsQ, bt = row / headsQ;  // row = (b·T + t)·Hq + h
    rowDot[(bt / seqQ * headsQ + h) * seqQ + bt % seqQ] = sum;
  }
}

// ---------------------------------------------------------------------------------------------
// dQ on tensor cores. Block: 4 warps, 64 query rows, warp w owning rows [16w, 16w + 16); the
// latest query tiles first. Q_w's fragments stay in registers, the dO tile in shared memory. Per
// key tile of BC keys (K, V and mask bits double-buffered with asynchronous copies, as in the
// forward):
//   S = Q_w·Kᵀ and dP = dO_w·Vᵀ as [16, BC] accumulator fragments; P = 2^(x − lse₂) and
//   dS = P ∘ (dP − Di) elementwise in registers (the element-to-row/column mapping read once,
//   fragmentCoordinates); dS → bf16 in the warp's shared tile; dQ_w += dS·K (DP/16 float
//   accumulator fragments in registers). Finally dQ = scale · dQ_w → bf16.
// Shared memory (LayoutDq): D = 128 (BC = 32): 2 × 17 KB K/V stages + 17 KB dO + 5 KB dS ≈ 57 KB;
// D = 64 (BC = 64): 2 × 18 KB + 9 KB + 9 KB = 55 KB (opt-in above 48 KB). Registers: Q fragments,
// dQ accumulators, S and dP fragments ≈ 250 (a tighter bound spills): 2 blocks, 8 warps per SM.
template <int DP, int BC>
struct LayoutDq {
  static constexpr int kRows = 64, kWarps = 4, kThreads = 128;
  static constexpr int ldK = DP + 8;  // bf16 K, V, Q, dO rows
  static constexpr int ldD = BC + 8;  // bf16 dS rows
  static constexpr int ldE = ldD / 2;  // float rows of the 16×16 scratch tile laid over the warp's dS tile
  static constexpr size_t stageBytes = size_t{2} * 2 * BC * ldK;  // [K tile; V tile]
  static constexpr size_t vOff = size_t{2} * BC * ldK;            // within a stage
  static constexpr size_t dOOff = align128(2 * stageBytes);       // the stages hold the Q tile at first
  static constexpr size_t dSOff = dOOff + align128(size_t{2} * kRows * ldK);
  static constexpr size_t keyOkOff = dSOff + align128(size_t{2} * kWarps * 16 * ldD);  // [2][BC]
  static constexpr size_t statOff = keyOkOff + align128(size_t{4} * 2 * BC);  // per warp: lse₂[16], Di[16]
  static constexpr size_t bytes = statOff + align128(size_t{4} * kWarps * 32);
  static_assert(DP % 16 == 0 && BC % 16 == 0, "WMMA tiles are 16×16");
  static_assert(ldE >= 16 && ldE % 4 == 0, "the scratch tile fits a dS tile");
  static_assert(size_t{2} * kRows * ldK <= 2 * stageBytes, "the Q tile fits the K/V stages");
  static_assert(bytes <= 96 * 1024, "fits the opt-in shared memory of every sm_80+ card");
};

template <int DP, int BC>
__global__ void __launch_bounds__(128, 2) dqWmmaKernel(BackwardParams<Bf16> p) {
  using L = LayoutDq<DP, BC>;
  unsigned char* smem = dynamicSmem();
  Bf16* dOs = reinterpret_cast<Bf16*>(smem + L::dOOff);
  const Geometry& g = p.geo;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  Bf16* dSw = reinterpret_cast<Bf16*>(smem + L::dSOff) + warp * 16 * L::ldD;  // [16, ldD]
  float* scratch = reinterpret_cast<float*>(dSw);  // [16, ldE]: before and after the key loop
  float* lse2 = reinterpret_cast<float*>(smem + L::statOff) + warp * 32;  // this warp's rows' lse · log2 e
  float* di = lse2 + 16;

  const QueryTile tile = queryTile(g, L::kRows);
  const int64_t b = tile.b, h = tile.h, kvHead = tile.kvHead, t0 = tile.t0;
  const int rows = tile.rows;
  const int dim = static_cast<int>(g.dim);

  Bf16* qs = reinterpret_cast<Bf16*>(smem);
  stageTile(qs, L::ldK, p.q + g.qRow(b, t0, h), g.qStride(), L::kRows, rows, dim, DP, p.vec, tid, L::kThreads);
  stageTile(dOs, L::ldK, p.dOut + g.qRow(b, t0, h), g.qStride(), L::kRows, rows, dim, DP, p.vec, tid, L::kThreads);
  if (lane < 16) {
    const int64_t t = t0 + warp * 16 + lane;
    lse2[lane] = t < g.seqQ ? p.lse[g.statRow(b, h) + t] * kLog2e : kNegInf;
    di[lane] = t < g.seqQ ? p.rowDot[g.statRow(b, h) + t] : 0.0f;
  }
  __syncthreads();
  FragA qf[DP / 16];
#pragma unroll
  for (int kk = 0; kk < DP / 16; ++kk) wmma::load_matrix_sync(qf[kk], qs + warp * 16 * L::ldK + kk * 16, L::ldK);
  int coord[kFragElems];
  fragmentCoordinates(scratch, L::ldE, coord);
  FragC dq[DP / 16];
#pragma unroll
  for (int n = 0; n < DP / 16; ++n) wmma::fill_fragment(dq[n], 0.0f);
  __syncthreads();  // every warp holds its Q fragments before K/V tiles overwrite the Q tile

  auto issueTile = [&](int64_t j0, int buf) { issueKvTile<L, BC, DP>(smem, p, g, b, kvHead, j0, buf, tid); };

  const int64_t keyEnd = g.keyEnd(t0 + rows);
  if (keyEnd > 0) issueTile(0, 0);
  for (int64_t j0 = 0, it = 0; j0 < keyEnd; j0 += BC, ++it) {
    const int buf = static_cast<int>(it & 1);
    if (j0 + BC < keyEnd) {
      issueTile(j0 + BC, buf ^ 1);
      waitAsyncCopies<1>();
    } else {
      waitAsyncCopies<0>();
    }
    __syncthreads();  // tile `it` has landed for the whole block
    const Bf16* ks = reinterpret_cast<const Bf16*>(smem + buf * L::stageBytes);
    const Bf16* vs = ks + L::vOff / 2;
    const int* keyOk = reinterpret_cast<const int*>(smem + L::keyOkOff) + buf * BC;

    // S = Q_w·Kᵀ, then P in place.
    FragC s[BC / 16];
#pragma unroll
    for (int n = 0; n < BC / 16; ++n) {
      wmma::fill_fragment(s[n], 0.0f);
#pragma unroll
      for (int kk = 0; kk < DP / 16; ++kk) {
        FragBT kb;
        wmma::load_matrix_sync(kb, ks + n * 16 * L::ldK + kk * 16, L::ldK);
        wmma::mma_sync(s[n], qf[kk], kb, s[n]);
      }
#pragma unroll
      for (int i = 0; i < kFragElems; ++i) {
        const int row = coord[i] >> 4, col = n * 16 + (coord[i] & 15);
        const float rowLse = lse2[row];
        const bool visible = keyOk[col] && g.causalAllows(t0 + warp * 16 + row, j0 + col) && rowLse != kNegInf;
        s[n].x[i] = visible ? exp2f(s[n].x[i] * g.scaleLog2 - rowLse) : 0.0f;
      }
    }
    // dP = dO_w·Vᵀ.
    FragC dp[BC / 16];
#pragma unroll
    for (int n = 0; n < BC / 16; ++n) wmma::fill_fragment(dp[n], 0.0f);
#pragma unroll
    for (int kk = 0; kk < DP / 16; ++kk) {
      FragA da;
      wmma::load_matrix_sync(da, dOs + warp * 16 * L::ldK + kk * 16, L::ldK);
#pragma unroll
      for (int n = 0; n < BC / 16; ++n) {
        FragBT vb;
        wmma::load_matrix_sync(vb, vs + n * 16 * L::ldK + kk * 16, L::ldK);
        wmma::mma_sync(dp[n], da, vb, dp[n]);
      }
    }
    // dS = P ∘ (dP − Di) → bf16 tile.
#pragma unroll
    for (int n = 0; n < BC / 16; ++n) {
#pragma unroll
      for (int i = 0; i < kFragElems; ++i) {
        const int row = coord[i] >> 4, col = n * 16 + (coord[i] & 15);
        dSw[row * L::ldD + col] = __float2bfloat16_rn(s[n].x[i] * (dp[n].x[i] - di[row]));
      }
    }
    __syncwarp();
    // dQ_w += dS·K.
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk) {
      FragA dsa;
      wmma::load_matrix_sync(dsa, dSw + kk * 16, L::ldD);
#pragma unroll
      for (int n = 0; n < DP / 16; ++n) {
        FragB kb;
        wmma::load_matrix_sync(kb, ks + kk * 16 * L::ldK + n * 16, L::ldK);
        wmma::mma_sync(dq[n], dsa, kb, dq[n]);
      }
    }
    __syncthreads();  // every warp is done with stage `buf` (and its dS tile) before the next refill
  }

  const int validRows = min(16, rows - warp * 16);
#pragma unroll
  for (int n = 0; n < DP / 16; ++n) {
    __syncwarp();
    wmma::store_matrix_sync(scratch, dq[n], L::ldE, wmma::mem_row_major);
    __syncwarp();
    if (validRows > 0) {
      writeTile(p.dQ + g.qRow(b, t0 + warp * 16, h) + n * 16, g.qStride(), scratch, L::ldE, validRows, dim - n * 16,
                g.scale, p.vec);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// dK and dV on tensor cores. Block: 8 warps, 64 keys of one (b, kv head); it steps over the
// group's query heads and, per head, over tiles of 32 queries from the first query that sees the
// key tile (Q, dO tiles and their lse, Di double-buffered with asynchronous copies). Per step:
//   phase 1, warp w computes the [16 queries, 16 keys] block (w / 4, w % 4) of S = Q·Kᵀ and of
//   dP = dO·Vᵀ, then P and dS = P ∘ (dP − Di) elementwise (fragmentCoordinates), into the shared
//   bf16 tiles P, dS [32 queries, 64 keys];
//   phase 2, warp w accumulates keys [16·(w % 4), +16) × dimensions [(w / 4)·DP/2, +DP/2) of
//   dV += Pᵀ·dO and dK += dSᵀ·Q (Pᵀ and dSᵀ read as col-major A operands; DP/32 accumulator
//   fragments each, in registers).
// Finally dK = scale · dK. Shared memory (LayoutDkv): D = 128: 34 KB K/V + 2 × 17 KB Q/dO stages +
// 9 KB P/dS ≈ 78 KB (opt-in); D = 64: ≈ 46 KB. Registers ≈ 250 at D = 128 (dK, dV accumulators 64,
// and hoisted fragments; a bound of 128 spills): one block, 8 warps per SM.
template <int DP>
struct LayoutDkv {
  static constexpr int kKeys = 64, kQueries = 32, kWarps = 8, kThreads = 256;
  static constexpr int ldK = DP + 8;     // bf16 K, V, Q, dO rows
  static constexpr int ldP = kKeys + 8;  // bf16 P, dS rows
  static constexpr int ldE = 16;         // float rows of the per-warp 16×16 scratch tiles over P/dS
  static constexpr size_t kOff = 0;
  static constexpr size_t vOff = align128(size_t{2} * kKeys * ldK);
  static constexpr size_t stageOff = vOff + align128(size_t{2} * kKeys * ldK);  // 2 × [Q tile; dO tile]
  static constexpr size_t stageBytes = size_t{2} * 2 * kQueries * ldK;
  static constexpr size_t dOInStage = size_t{2} * kQueries * ldK;
  static constexpr size_t pOff = stageOff + align128(2 * stageBytes);
  static constexpr size_t dSOff = pOff + align128(size_t{2} * kQueries * ldP);
  static constexpr size_t keyOkOff = dSOff + align128(size_t{2} * kQueries * ldP);
  static constexpr size_t statOff = keyOkOff + align128(size_t{4} * kKeys);  // [2][lse₂[32], Di[32]]
  static constexpr size_t bytes = statOff + align128(size_t{4} * 2 * 2 * kQueries);
  static_assert(DP % 32 == 0, "each warp takes DP/2 dimensions in 16-wide fragments");
  static_assert(size_t{4} * kWarps * 16 * ldE <= keyOkOff - pOff, "the scratch tiles fit P and dS");
  static_assert(bytes <= 96 * 1024, "fits the opt-in shared memory of every sm_80+ card");
};

template <int DP>
__global__ void __launch_bounds__(256, 1) dkvWmmaKernel(BackwardParams<Bf16> p) {
  using L = LayoutDkv<DP>;
  constexpr int kCols = DP / 2;  // dimensions per warp in phase 2
  unsigned char* smem = dynamicSmem();
  Bf16* ks = reinterpret_cast<Bf16*>(smem + L::kOff);
  Bf16* vs = reinterpret_cast<Bf16*>(smem + L::vOff);
  Bf16* ps = reinterpret_cast<Bf16*>(smem + L::pOff);
  Bf16* dSs = reinterpret_cast<Bf16*>(smem + L::dSOff);
  int* keyOk = reinterpret_cast<int*>(smem + L::keyOkOff);
  const Geometry& g = p.geo;
  const int tid = threadIdx.x, warp = tid >> 5;
  // Per-warp [16, 16] float scratch over the P and dS tiles: used before and after the steps only.
  float* scratch = reinterpret_cast<float*>(smem + L::pOff) + warp * 16 * L::ldE;

  const int64_t pair = blockIdx.x % (g.batch * g.headsKv);
  const int64_t b = pair / g.headsKv, kvHead = pair % g.headsKv;
  const int64_t j0 = blockIdx.x / (g.batch * g.headsKv) * L::kKeys;  // the earliest (heaviest) tiles first
  const int keys = static_cast<int>(imin(L::kKeys, g.seqK - j0));
  const int dim = static_cast<int>(g.dim);
  stageTile(ks, L::ldK, p.k + g.kRow(b, j0, kvHead), g.kStride(), L::kKeys, keys, dim, DP, p.vec, tid, L::kThreads);
  stageTile(vs, L::ldK, p.v + g.kRow(b, j0, kvHead), g.kStride(), L::kKeys, keys, dim, DP, p.vec, tid, L::kThreads);
  if (tid < L::kKeys) keyOk[tid] = g.keyAllowed(b, j0 + tid);
  int coord[kFragElems];
  fragmentCoordinates(scratch, L::ldE, coord);

  const int qBlock = warp >> 2, kBlock = warp & 3;  // phase 1: S block; phase 2: key rows kBlock
  const int c0 = (warp >> 2) * kCols;               // phase 2: this warp's dimensions
  FragC dv[kCols / 16], dk[kCols / 16];
#pragma unroll
  for (int n = 0; n < kCols / 16; ++n) {
    wmma::fill_fragment(dv[n], 0.0f);
    wmma::fill_fragment(dk[n], 0.0f);
  }

  // Steps: (query head h, query tile tq0) for h in the group, tq0 from the first query that sees a
  // key of the tile. Step `step` is staged into stage `buf` as one commit group.
  const int64_t tStart = g.firstQuery(j0);
  const int64_t tilesPerHead = (g.seqQ - tStart + L::kQueries - 1) / L::kQueries;
  const int64_t steps = g.group * tilesPerHead;
  auto stepHead = [&](int64_t step) { return kvHead * g.group + step / tilesPerHead; };
  auto stepStart = [&](int64_t step) { return tStart + step % tilesPerHead * L::kQueries; };
  auto issueStep = [&](int64_t step, int buf) {
    const int64_t h = stepHead(step), tq0 = stepStart(step);
    const int queries = static_cast<int>(imin(L::kQueries, g.seqQ - tq0));
    Bf16* qs = reinterpret_cast<Bf16*>(smem + L::stageOff + buf * L::stageBytes);
    stageTileAsync(qs, L::ldK, p.q + g.qRow(b, tq0, h), g.qStride(), L::kQueries, queries, dim, DP, p.vec, tid,
                   L::kThreads);
    stageTileAsync(qs + L::dOInStage / 2, L::ldK, p.dOut + g.qRow(b, tq0, h), g.qStride(), L::kQueries, queries, dim,
                   DP, p.vec, tid, L::kThreads);
    if (tid < L::kQueries) {
      float* stat = reinterpret_cast<float*>(smem + L::statOff) + buf * 2 * L::kQueries;
      stat[tid] = tid < queries ? p.lse[g.statRow(b, h) + tq0 + tid] * kLog2e : kNegInf;
      stat[L::kQueries + tid] = tid < queries ? p.rowDot[g.statRow(b, h) + tq0 + tid] : 0.0f;
    }
    commitAsyncCopies();
  };

  if (steps > 0) issueStep(0, 0);
  for (int64_t step = 0; step < steps; ++step) {
    const int buf = static_cast<int>(step & 1);
    if (step + 1 < steps) {
      issueStep(step + 1, buf ^ 1);
      waitAsyncCopies<1>();
    } else {
      waitAsyncCopies<0>();
    }
    __syncthreads();  // step `step` has landed for the whole block (and K, V at the first step)
    const int64_t tq0 = stepStart(step);
    const Bf16* qs = reinterpret_cast<const Bf16*>(smem + L::stageOff + buf * L::stageBytes);
    const Bf16* dOs = qs + L::dOInStage / 2;
    const float* lse2 = reinterpret_cast<const float*>(smem + L::statOff) + buf * 2 * L::kQueries;
    const float* di = lse2 + L::kQueries;

    // Phase 1: this warp's 16×16 blocks of S and dP → P, dS.
    FragC s, dp;
    wmma::fill_fragment(s, 0.0f);
    wmma::fill_fragment(dp, 0.0f);
#pragma unroll
    for (int kk = 0; kk < DP / 16; ++kk) {
      FragA a;
      FragBT bt;
      wmma::load_matrix_sync(a, qs + qBlock * 16 * L::ldK + kk * 16, L::ldK);
      wmma::load_matrix_sync(bt, ks + kBlock * 16 * L::ldK + kk * 16, L::ldK);
      wmma::mma_sync(s, a, bt, s);
      wmma::load_matrix_sync(a, dOs + qBlock * 16 * L::ldK + kk * 16, L::ldK);
      wmma::load_matrix_sync(bt, vs + kBlock * 16 * L::ldK + kk * 16, L::ldK);
      wmma::mma_sync(dp, a, bt, dp);
    }
#pragma unroll
    for (int i = 0; i < kFragElems; ++i) {
      const int qr = qBlock * 16 + (coord[i] >> 4), kc = kBlock * 16 + (coord[i] & 15);
      const float rowLse = lse2[qr];
      const bool visible = keyOk[kc] && g.causalAllows(tq0 + qr, j0 + kc) && rowLse != kNegInf;
      const float prob = visible ? exp2f(s.x[i] * g.scaleLog2 - rowLse) : 0.0f;
      ps[qr * L::ldP + kc] = __float2bfloat16_rn(prob);
      dSs[qr * L::ldP + kc] = __float2bfloat16_rn(prob * (dp.x[i] - di[qr]));
    }
    __syncthreads();

    // Phase 2: dV += Pᵀ·dO, dK += dSᵀ·Q for this warp's keys and dimensions.
#pragma unroll
    for (int kk = 0; kk < L::kQueries / 16; ++kk) {
      FragAT pt, dst;
      wmma::load_matrix_sync(pt, ps + kk * 16 * L::ldP + kBlock * 16, L::ldP);
      wmma::load_matrix_sync(dst, dSs + kk * 16 * L::ldP + kBlock * 16, L::ldP);
#pragma unroll
      for (int n = 0; n < kCols / 16; ++n) {
        FragB bm;
        wmma::load_matrix_sync(bm, dOs + kk * 16 * L::ldK + c0 + n * 16, L::ldK);
        wmma::mma_sync(dv[n], pt, bm, dv[n]);
        wmma::load_matrix_sync(bm, qs + kk * 16 * L::ldK + c0 + n * 16, L::ldK);
        wmma::mma_sync(dk[n], dst, bm, dk[n]);
      }
    }
    __syncthreads();  // P, dS and stage `buf` are read before the next step rewrites them
  }

  // dV and scale · dK → bf16 rows [j0 + 16·kBlock, +16), dimensions [c0, c0 + DP/2).
  const int validRows = min(16, keys - kBlock * 16);
#pragma unroll
  for (int n = 0; n < kCols / 16; ++n) {
    const int64_t offset = g.kRow(b, j0 + kBlock * 16, kvHead) + c0 + n * 16;
    const int validCols = dim - (c0 + n * 16);
    __syncwarp();
    wmma::store_matrix_sync(scratch, dv[n], L::ldE, wmma::mem_row_major);
    __syncwarp();
    if (validRows > 0) writeTile(p.dV + offset, g.kStride(), scratch, L::ldE, validRows, validCols, 1.0f, p.vec);
    __syncwarp();
    wmma::store_matrix_sync(scratch, dk[n], L::ldE, wmma::mem_row_major);
    __syncwarp();
    if (validRows > 0) writeTile(p.dK + offset, g.kStride(), scratch, L::ldE, validRows, validCols, g.scale, p.vec);
  }
}

template <int DP, int BC>
void launchBackwardWmma(const BackwardParams<Bf16>& p) {
  const Geometry& g = p.geo;
  if (g.seqQ > 0) {
    using L = LayoutDq<DP, BC>;
    const int64_t tiles = (g.seqQ + L::kRows - 1) / L::kRows;
    launch(dqWmmaKernel<DP, BC>, "attention dqWmmaKernel", tiles * g.batch * g.headsQ, L::kThreads, L::bytes, p);
  }
  if (g.seqK > 0) {
    using L = LayoutDkv<DP>;
    const int64_t tiles = (g.seqK + L::kKeys - 1) / L::kKeys;
    launch(dkvWmmaKernel<DP>, "attention dkvWmmaKernel", tiles * g.batch * g.headsKv, L::kThreads, L::bytes, p);
  }
}

// ---------------------------------------------------------------------------------------------
// SIMT kernels: 4 warps × 8 rows, lanes over 32 columns for the dot products and over 32·NV
// output dimensions for the accumulations (see SimtSplit), as in the forward.
//
// dQ: block = 32 query rows of one (b, h) × one output slice. Per key tile of 32 keys, lane j
// computes S[r][j] = q_r·k_j and dP[r][j] = dO_r·v_j for its warp's 8 rows; P and dS in registers;
// dS → the warp's [8, 32] shared tile; dQ[r][d] += Σ_j dS[r][j]·K[j][d] (lane owns d).
// Shared memory: Q, dO rows (resident when D ≤ 128), K, V column tiles, K's slice when D > 128,
// dS. D = 128: 32 KB + 33 KB + 4 KB ≈ 69 KB (opt-in); D = 64 ≈ 37 KB. 2 blocks (8 warps) per SM.
struct LayoutDqSimt {
  size_t dOOff, kOff, vOff, kSliceOff, dSOff, keyOkOff, bytes;  // the Q rows start at 0
  __host__ __device__ explicit LayoutDqSimt(const SimtSplit& s) {
    dOOff = s.rowTileBytes();
    kOff = dOOff + s.rowTileBytes();
    vOff = kOff + s.colTileBytes();
    kSliceOff = vOff + s.colTileBytes();
    dSOff = kSliceOff + s.sliceTileBytes();
    keyOkOff = dSOff + kSimtWarpTileBytes;
    bytes = keyOkOff + align128(size_t{4} * kSimtCols);
  }
};

template <typename D, int NV>
__global__ void __launch_bounds__(kSimtThreads, 2) dqSimtKernel(BackwardParams<D> p) {
  constexpr int R = kSimtRowsPerWarp;
  const Geometry& g = p.geo;
  const SimtSplit split(g.dim, NV);
  const LayoutDqSimt lay(split);
  unsigned char* smem = dynamicSmem();
  float* qs = reinterpret_cast<float*>(smem);              // [32 rows, chunk]
  float* dOs = reinterpret_cast<float*>(smem + lay.dOOff);  // [32 rows, chunk]
  float* ks = reinterpret_cast<float*>(smem + lay.kOff);    // [32 keys, chunk + 4]
  float* vs = reinterpret_cast<float*>(smem + lay.vOff);    // [32 keys, chunk + 4]
  // K's output slice [32 keys, ld]: the K column tile itself when D ≤ 128.
  const float* kSlice = split.resident() ? ks : reinterpret_cast<float*>(smem + lay.kSliceOff);
  const int kSliceLd = split.resident() ? split.colLd() : split.slice;
  int* keyOk = reinterpret_cast<int*>(smem + lay.keyOkOff);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  float* dSw = reinterpret_cast<float*>(smem + lay.dSOff) + warp * R * kSimtCols;  // [8 rows, 32 keys]

  const int64_t tiles = (g.seqQ + kSimtRows - 1) / kSimtRows;
  const int64_t units = g.batch * g.headsQ * split.slices;
  const int64_t unit = blockIdx.x % units;
  const int64_t b = unit / (g.headsQ * split.slices), h = unit / split.slices % g.headsQ;
  const int64_t kvHead = h / g.group;
  const int d0 = static_cast<int>(unit % split.slices) * split.slice;
  const int64_t t0 = (tiles - 1 - blockIdx.x / units) * kSimtRows;
  const int rows = static_cast<int>(imin(kSimtRows, g.seqQ - t0));
  const int dim = static_cast<int>(g.dim);
  const int sliceDims = min(split.slice, dim - d0);

  const D* qBase = p.q + g.qRow(b, t0, h);
  const D* dOBase = p.dOut + g.qRow(b, t0, h);
  if (split.resident()) {
    stageTile(qs, split.rowLd(), qBase, g.qStride(), kSimtRows, rows, dim, split.chunk, p.vec, tid, kSimtThreads);
    stageTile(dOs, split.rowLd(), dOBase, g.qStride(), kSimtRows, rows, dim, split.chunk, p.vec, tid, kSimtThreads);
  }
  float lse2[R], di[R], acc[R][NV];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t t = t0 + warp * R + r;
    lse2[r] = t < g.seqQ ? p.lse[g.statRow(b, h) + t] * kLog2e : kNegInf;
    di[r] = t < g.seqQ ? p.rowDot[g.statRow(b, h) + t] : 0.0f;
#pragma unroll
    for (int v = 0; v < NV; ++v) acc[r][v] = 0.0f;
  }

  const int64_t keyEnd = g.keyEnd(t0 + rows);
  for (int64_t j0 = 0; j0 < keyEnd; j0 += kSimtCols) {
    const int keys = static_cast<int>(imin(kSimtCols, g.seqK - j0));
    const D* kBase = p.k + g.kRow(b, j0, kvHead);
    const D* vBase = p.v + g.kRow(b, j0, kvHead);
    float s[R], dp[R];
#pragma unroll
    for (int r = 0; r < R; ++r) s[r] = dp[r] = 0.0f;
    for (int c = 0; c < split.chunks; ++c) {
      const int c0 = c * split.chunk, cols = min(split.chunk, dim - c0);
      __syncthreads();  // the previous chunk's (or tile's) tiles, dS and key bits are read
      stageTile(ks, split.colLd(), kBase + c0, g.kStride(), kSimtCols, keys, cols, split.chunk, p.vec, tid,
                kSimtThreads);
      stageTile(vs, split.colLd(), vBase + c0, g.kStride(), kSimtCols, keys, cols, split.chunk, p.vec, tid,
                kSimtThreads);
      if (!split.resident()) {
        stageTile(qs, split.rowLd(), qBase + c0, g.qStride(), kSimtRows, rows, cols, split.chunk, p.vec, tid,
                  kSimtThreads);
        stageTile(dOs, split.rowLd(), dOBase + c0, g.qStride(), kSimtRows, rows, cols, split.chunk, p.vec, tid,
                  kSimtThreads);
      }
      if (c == 0) {
        if (!split.resident()) {
          stageTile(reinterpret_cast<float*>(smem + lay.kSliceOff), split.slice, kBase + d0, g.kStride(), kSimtCols,
                    keys, sliceDims, split.slice, p.vec, tid, kSimtThreads);
        }
        if (tid < kSimtCols) keyOk[tid] = g.keyAllowed(b, j0 + tid);
      }
      __syncthreads();
      const float4* k4Row = reinterpret_cast<const float4*>(ks + lane * split.colLd());
      const float4* v4Row = reinterpret_cast<const float4*>(vs + lane * split.colLd());
      for (int d4 = 0; d4 < split.chunk / 4; ++d4) {
        const float4 k4 = k4Row[d4], v4 = v4Row[d4];
#pragma unroll
        for (int r = 0; r < R; ++r) {
          s[r] = dot4(reinterpret_cast<const float4*>(qs + (warp * R + r) * split.rowLd())[d4], k4, s[r]);
          dp[r] = dot4(reinterpret_cast<const float4*>(dOs + (warp * R + r) * split.rowLd())[d4], v4, dp[r]);
        }
      }
    }

    const bool keyVisible = keyOk[lane];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const bool visible = keyVisible && g.causalAllows(t0 + warp * R + r, j0 + lane) && lse2[r] != kNegInf;
      const float prob = visible ? exp2f(s[r] * g.scaleLog2 - lse2[r]) : 0.0f;
      dSw[r * kSimtCols + lane] = prob * (dp[r] - di[r]);
    }
    __syncwarp();
    for (int j4 = 0; j4 < kSimtCols / 4; ++j4) {
      float4 ds4[R];
#pragma unroll
      for (int r = 0; r < R; ++r) ds4[r] = reinterpret_cast<const float4*>(dSw + r * kSimtCols)[j4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float kv[NV];
#pragma unroll
        for (int v = 0; v < NV; ++v) kv[v] = kSlice[(4 * j4 + e) * kSliceLd + lane + 32 * v];
#pragma unroll
        for (int r = 0; r < R; ++r) {
#pragma unroll
          for (int v = 0; v < NV; ++v) acc[r][v] = fmaf(component(ds4[r], e), kv[v], acc[r][v]);
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t t = t0 + warp * R + r;
    if (t >= g.seqQ) break;
    D* dQ = p.dQ + g.qRow(b, t, h) + d0;
#pragma unroll
    for (int v = 0; v < NV; ++v) {
      if (lane + 32 * v < sliceDims) dQ[lane + 32 * v] = fromFloat<D>(g.scale * acc[r][v]);
    }
  }
}

// dK, dV: block = 32 keys of one (b, kv head) × one output slice; warp w owns keys
// [8w, 8w + 8). It loops over the group's query heads and tiles of 32 queries from the first query
// that sees the key tile; lane i takes query i of the tile: Sᵀ[r][i] = k_r·q_i, dPᵀ[r][i] =
// v_r·dO_i, P and dS in registers → the warp's [8, 32] shared tiles; then
// dV[r][d] += Σ_i P[r][i]·dO[i][d], dK[r][d] += Σ_i dS[r][i]·Q[i][d] (lane owns d).
// Shared memory: K, V rows (resident when D ≤ 128), Q, dO column tiles, their slices when D > 128,
// P and dS. D = 128: 32 KB + 33 KB + 8 KB ≈ 73 KB (opt-in); D = 64 ≈ 41 KB. 2 blocks (8 warps) per
// SM on an H100 (1 on sm_86/89 at D = 128).
struct LayoutDkvSimt {
  size_t vOff, qOff, dOOff, qSliceOff, dOSliceOff, pOff, dSOff, keyOkOff, bytes;  // the K rows start at 0
  __host__ __device__ explicit LayoutDkvSimt(const SimtSplit& s) {
    vOff = s.rowTileBytes();
    qOff = vOff + s.rowTileBytes();
    dOOff = qOff + s.colTileBytes();
    qSliceOff = dOOff + s.colTileBytes();
    dOSliceOff = qSliceOff + s.sliceTileBytes();
    pOff = dOSliceOff + s.sliceTileBytes();
    dSOff = pOff + kSimtWarpTileBytes;
    keyOkOff = dSOff + kSimtWarpTileBytes;
    bytes = keyOkOff + align128(size_t{4} * kSimtRows);
  }
};

template <typename D, int NV>
__global__ void __launch_bounds__(kSimtThreads, 2) dkvSimtKernel(BackwardParams<D> p) {
  constexpr int R = kSimtRowsPerWarp;
  const Geometry& g = p.geo;
  const SimtSplit split(g.dim, NV);
  const LayoutDkvSimt lay(split);
  unsigned char* smem = dynamicSmem();
  float* ks = reinterpret_cast<float*>(smem);               // [32 keys, chunk]
  float* vs = reinterpret_cast<float*>(smem + lay.vOff);    // [32 keys, chunk]
  float* qs = reinterpret_cast<float*>(smem + lay.qOff);    // [32 queries, chunk + 4]
  float* dOs = reinterpret_cast<float*>(smem + lay.dOOff);  // [32 queries, chunk + 4]
  // Q's and dO's output slices [32 queries, ld]: the column tiles themselves when D ≤ 128.
  const float* qSlice = split.resident() ? qs : reinterpret_cast<float*>(smem + lay.qSliceOff);
  const float* dOSlice = split.resident() ? dOs : reinterpret_cast<float*>(smem + lay.dOSliceOff);
  const int sliceLd = split.resident() ? split.colLd() : split.slice;
  int* keyOk = reinterpret_cast<int*>(smem + lay.keyOkOff);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  float* pw = reinterpret_cast<float*>(smem + lay.pOff) + warp * R * kSimtCols;    // [8 keys, 32 queries]
  float* dSw = reinterpret_cast<float*>(smem + lay.dSOff) + warp * R * kSimtCols;  // [8 keys, 32 queries]

  const int64_t units = g.batch * g.headsKv * split.slices;
  const int64_t unit = blockIdx.x % units;
  const int64_t b = unit / (g.headsKv * split.slices), kvHead = unit / split.slices % g.headsKv;
  const int d0 = static_cast<int>(unit % split.slices) * split.slice;
  const int64_t j0 = blockIdx.x / units * kSimtRows;  // the earliest (heaviest) key tiles first
  const int keys = static_cast<int>(imin(kSimtRows, g.seqK - j0));
  const int dim = static_cast<int>(g.dim);
  const int sliceDims = min(split.slice, dim - d0);

  const D* kBase = p.k + g.kRow(b, j0, kvHead);
  const D* vBase = p.v + g.kRow(b, j0, kvHead);
  if (split.resident()) {
    stageTile(ks, split.rowLd(), kBase, g.kStride(), kSimtRows, keys, dim, split.chunk, p.vec, tid, kSimtThreads);
    stageTile(vs, split.rowLd(), vBase, g.kStride(), kSimtRows, keys, dim, split.chunk, p.vec, tid, kSimtThreads);
  }
  if (tid < kSimtRows) keyOk[tid] = g.keyAllowed(b, j0 + tid);
  float dv[R][NV], dk[R][NV];
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int v = 0; v < NV; ++v) dv[r][v] = dk[r][v] = 0.0f;
  }

  const int64_t tStart = g.firstQuery(j0);
  for (int64_t h = kvHead * g.group; h < (kvHead + 1) * g.group; ++h) {
    for (int64_t tq0 = tStart; tq0 < g.seqQ; tq0 += kSimtCols) {
      const int queries = static_cast<int>(imin(kSimtCols, g.seqQ - tq0));
      const D* qBase = p.q + g.qRow(b, tq0, h);
      const D* dOBase = p.dOut + g.qRow(b, tq0, h);
      const int64_t t = tq0 + lane;  // this lane's query
      const float lse2 = lane < queries ? p.lse[g.statRow(b, h) + t] * kLog2e : kNegInf;
      const float di = lane < queries ? p.rowDot[g.statRow(b, h) + t] : 0.0f;
      float s[R], dp[R];
#pragma unroll
      for (int r = 0; r < R; ++r) s[r] = dp[r] = 0.0f;
      for (int c = 0; c < split.chunks; ++c) {
        const int c0 = c * split.chunk, cols = min(split.chunk, dim - c0);
        __syncthreads();  // the previous chunk's (or tile's) tiles, P and dS are read
        stageTile(qs, split.colLd(), qBase + c0, g.qStride(), kSimtCols, queries, cols, split.chunk, p.vec, tid,
                  kSimtThreads);
        stageTile(dOs, split.colLd(), dOBase + c0, g.qStride(), kSimtCols, queries, cols, split.chunk, p.vec, tid,
                  kSimtThreads);
        if (!split.resident()) {
          stageTile(ks, split.rowLd(), kBase + c0, g.kStride(), kSimtRows, keys, cols, split.chunk, p.vec, tid,
                    kSimtThreads);
          stageTile(vs, split.rowLd(), vBase + c0, g.kStride(), kSimtRows, keys, cols, split.chunk, p.vec, tid,
                    kSimtThreads);
          if (c == 0) {
            stageTile(reinterpret_cast<float*>(smem + lay.qSliceOff), split.slice, qBase + d0, g.qStride(), kSimtCols,
                      queries, sliceDims, split.slice, p.vec, tid, kSimtThreads);
            stageTile(reinterpret_cast<float*>(smem + lay.dOSliceOff), split.slice, dOBase + d0, g.qStride(),
                      kSimtCols, queries, sliceDims, split.slice, p.vec, tid, kSimtThreads);
          }
        }
        __syncthreads();
        const float4* q4Row = reinterpret_cast<const float4*>(qs + lane * split.colLd());
        const float4* dO4Row = reinterpret_cast<const float4*>(dOs + lane * split.colLd());
        for (int d4 = 0; d4 < split.chunk / 4; ++d4) {
          const float4 q4 = q4Row[d4], dO4 = dO4Row[d4];
#pragma unroll
          for (int r = 0; r < R; ++r) {
            s[r] = dot4(reinterpret_cast<const float4*>(ks + (warp * R + r) * split.rowLd())[d4], q4, s[r]);
            dp[r] = dot4(reinterpret_cast<const float4*>(vs + (warp * R + r) * split.rowLd())[d4], dO4, dp[r]);
          }
        }
      }

#pragma unroll
      for (int r = 0; r < R; ++r) {
        const bool visible = keyOk[warp * R + r] && g.causalAllows(t, j0 + warp * R + r) && lse2 != kNegInf;
        const float prob = visible ? exp2f(s[r] * g.scaleLog2 - lse2) : 0.0f;
        pw[r * kSimtCols + lane] = prob;
        dSw[r * kSimtCols + lane] = prob * (dp[r] - di);
      }
      __syncwarp();
      // dV += P·dO, then dK += dS·Q, 4 queries at a time.
      for (int i4 = 0; i4 < kSimtCols / 4; ++i4) {
        float4 w4[R];
#pragma unroll
        for (int r = 0; r < R; ++r) w4[r] = reinterpret_cast<const float4*>(pw + r * kSimtCols)[i4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float x[NV];
#pragma unroll
          for (int v = 0; v < NV; ++v) x[v] = dOSlice[(4 * i4 + e) * sliceLd + lane + 32 * v];
#pragma unroll
          for (int r = 0; r < R; ++r) {
#pragma unroll
            for (int v = 0; v < NV; ++v) dv[r][v] = fmaf(component(w4[r], e), x[v], dv[r][v]);
          }
        }
      }
      for (int i4 = 0; i4 < kSimtCols / 4; ++i4) {
        float4 w4[R];
#pragma unroll
        for (int r = 0; r < R; ++r) w4[r] = reinterpret_cast<const float4*>(dSw + r * kSimtCols)[i4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float x[NV];
#pragma unroll
          for (int v = 0; v < NV; ++v) x[v] = qSlice[(4 * i4 + e) * sliceLd + lane + 32 * v];
#pragma unroll
          for (int r = 0; r < R; ++r) {
#pragma unroll
            for (int v = 0; v < NV; ++v) dk[r][v] = fmaf(component(w4[r], e), x[v], dk[r][v]);
          }
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t j = j0 + warp * R + r;
    if (j >= g.seqK) break;
    D* dV = p.dV + g.kRow(b, j, kvHead) + d0;
    D* dK = p.dK + g.kRow(b, j, kvHead) + d0;
#pragma unroll
    for (int v = 0; v < NV; ++v) {
      if (lane + 32 * v < sliceDims) {
        dV[lane + 32 * v] = fromFloat<D>(dv[r][v]);
        dK[lane + 32 * v] = fromFloat<D>(g.scale * dk[r][v]);
      }
    }
  }
}

template <typename D, int NV>
void launchBackwardSimt(const BackwardParams<D>& p) {
  const Geometry& g = p.geo;
  const SimtSplit split(g.dim, NV);
  if (g.seqQ > 0) {
    const int64_t tiles = (g.seqQ + kSimtRows - 1) / kSimtRows;
    launch(dqSimtKernel<D, NV>, "attention dqSimtKernel", tiles * g.batch * g.headsQ * split.slices, kSimtThreads,
           LayoutDqSimt(split).bytes, p);
  }
  if (g.seqK > 0) {
    const int64_t tiles = (g.seqK + kSimtRows - 1) / kSimtRows;
    launch(dkvSimtKernel<D, NV>, "attention dkvSimtKernel", tiles * g.batch * g.headsKv * split.slices,
           kSimtThreads, LayoutDkvSimt(split).bytes, p);
  }
}

}  // namespace

template <typename T>
void attentionBackward(const AttentionBackwardArgsT<T>& a) {
  if (a.batch == 0 || a.headsQ == 0) return;
  using D = DeviceType<T>;
  const int64_t rows = a.batch * a.seqQ * a.headsQ;
  DeviceBuffer<float> rowDot(static_cast<size_t>(rows));
  if (rows > 0) {
    launch(rowDotKernel<D>, "attention rowDotKernel", (rows + 7) / 8, 256, 0, devicePtr(a.out), devicePtr(a.dOut),
           rowDot.data(), rows, a.seqQ, a.headsQ, a.headDim);
  }
  const BackwardParams<D> p{devicePtr(a.q),
                            devicePtr(a.k),
                            devicePtr(a.v),
                            devicePtr(a.dOut),
                            a.lse,
                            rowDot.data(),
                            devicePtr(a.dQ),
                            devicePtr(a.dK),
                            devicePtr(a.dV),
                            makeGeometry(a.batch, a.seqQ, a.seqK, a.headsQ, a.headsKv, a.headDim, a.scale, a.causal,
                                         a.keyMask),
                            rowsVectorizable<D>(a.headDim, {a.q, a.k, a.v, a.dOut, a.dQ, a.dK, a.dV})};
  if constexpr (std::is_same_v<D, Bf16>) {
    if (a.headDim <= 64) return launchBackwardWmma<64, 64>(p);
    if (a.headDim <= 128) return launchBackwardWmma<128, 32>(p);
  }
  switch (simtDimsPerLane(a.headDim)) {
    case 1: return launchBackwardSimt<D, 1>(p);
    case 2: return launchBackwardSimt<D, 2>(p);
    default: return launchBackwardSimt<D, 4>(p);
  }
}

template void attentionBackward<float>(const AttentionBackwardArgsT<float>&);
template void attentionBackward<bf16>(const AttentionBackwardArgsT<bf16>&);

}  // namespace rlhf::cuda
