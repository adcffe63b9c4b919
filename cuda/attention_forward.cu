// Attention forward on the GPU (kernels.h §5), in the FlashAttention-2 manner: a thread block owns
// a tile of query rows of one (batch, query head), loops over the key tiles its rows can see
// (causally invisible tiles are never visited), computes the tile's scores, folds them into a
// running max and sum per row (online softmax, float32), accumulates O = P·V in float32 and
// writes O and lse once at the end. Scores are kept in base-2 units (x = s·scale·log2 e), so
// every exponential is one exp2; lse = ln 2 · max + ln(sum).
//
// Two kernels:
//   forwardWmmaKernel  bf16, D ≤ 128 (D zero-padded to 64 or 128): both products on tensor cores.
//   forwardSimtKernel  float32 for every D, bf16 for D > 128: FMA on float32 tiles.
#include "attention_common.cuh"
#include "reduce.cuh"

namespace rlhf::cuda {
namespace {

using namespace attn;

template <typename D>
struct ForwardParams {
  const D* q;
  const D* k;
  const D* v;
  D* out;
  float* lse;
  Geometry geo;
  bool vec;  // rowsVectorizable(q, k, v, out)
};

// ---------------------------------------------------------------------------------------------
// Tensor-core kernel. Block: 4 warps, 64 query rows, warp w owning rows [16w, 16w + 16); one block
// per (b, h, query tile), the latest (heaviest, when causal) tiles first. Per key tile of BC keys:
//   1. K and V tiles (bf16, D zero-padded to DP) and the keys' mask bits are double-buffered: the
//      next tile's asynchronous copies (cp.async) are in flight while this one is computed;
//   2. each warp: S = Q_w·Kᵀ [16, BC] on tensor cores (Q_w's fragments stay in registers for the
//      whole kernel) → its float score tile in shared memory;
//   3. lanes 2r and 2r + 1 take row r's two halves: running max m, rescale α = 2^(m_old − m),
//      P = 2^(x − m) rounded to bf16 (written over the score tile), l = α·l + Σ P;
//   4. O_w (float accumulator fragments in registers, DP/16 of them) ← α·O_w + P·V.
// The accumulator's element-to-row mapping is read once per warp (fragmentCoordinates), so that
// step 4 can scale each element by its row's α. Finally O_w / l → bf16, lse = ln 2 · m + ln l.
//
// Shared memory (LayoutFwd): D = 128 (BC = 32): 2 × 17 KB K/V stages + 9 KB scores = 43.5 KB, under
// the default 48 KB; D = 64 (BC = 64): 2 × 18 KB + 17 KB = 53.75 KB (opt-in). Registers: Q fragments
// (DP/16 × 4) and O accumulators (DP/16 × 8) stay resident; the bound of 3 blocks per SM caps them
// at 168 (no spills): 12 warps per SM on an H100 (2 blocks on sm_86/89 by shared memory).
template <int DP, int BC>
struct LayoutFwd {
  static constexpr int kRows = 64, kWarps = 4, kThreads = 128;
  static constexpr int ldK = DP + 8;   // bf16; rows of 16-byte multiples, shifted 4 banks apart
  static constexpr int ldS = BC + 4;   // float score rows
  static constexpr int ldP = 2 * ldS;  // the same rows seen as bf16 (P overwrites the scores)
  // Two stages of [K tile; V tile]; at the start the Q tile is staged there.
  static constexpr size_t stageBytes = size_t{2} * 2 * BC * ldK;
  static constexpr size_t vOff = size_t{2} * BC * ldK;  // within a stage
  static constexpr size_t scoreOff = align128(2 * stageBytes);
  static constexpr size_t keyOkOff = scoreOff + align128(size_t{4} * kWarps * 16 * ldS);  // [2][BC]
  static constexpr size_t rowScaleOff = keyOkOff + align128(size_t{4} * 2 * BC);
  static constexpr size_t bytes = rowScaleOff + align128(size_t{4} * kWarps * 16);
  static_assert(DP % 16 == 0 && BC % 16 == 0 && BC >= 16, "WMMA tiles are 16×16");
  static_assert(size_t{2} * kRows * ldK <= 2 * stageBytes, "the Q tile fits the K/V stages");
  static_assert(bytes <= 96 * 1024, "fits the opt-in shared memory of every sm_80+ card");
};

template <int DP, int BC>
__global__ void __launch_bounds__(128, 3) forwardWmmaKernel(ForwardParams<Bf16> p) {
  using L = LayoutFwd<DP, BC>;
  constexpr int kHalf = BC / 2;  // columns per lane in the softmax step
  unsigned char* smem = dynamicSmem();
  const Geometry& g = p.geo;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  float* sw = reinterpret_cast<float*>(smem + L::scoreOff) + warp * 16 * L::ldS;  // [16, ldS]
  Bf16* pw = reinterpret_cast<Bf16*>(sw);                                          // [16, ldP]
  float* rowScale = reinterpret_cast<float*>(smem + L::rowScaleOff) + warp * 16;

  const QueryTile tile = queryTile(g, L::kRows);
  const int64_t b = tile.b, h = tile.h, kvHead = tile.kvHead, t0 = tile.t0;
  const int rows = tile.rows;
  const int dim = static_cast<int>(g.dim);

  // Q tile → shared (over the K/V stages) → this warp's fragments.
  Bf16* qs = reinterpret_cast<Bf16*>(smem);
  stageTile(qs, L::ldK, p.q + g.qRow(b, t0, h), g.qStride(), L::kRows, rows, dim, DP, p.vec, tid, L::kThreads);
  __syncthreads();
  FragA qf[DP / 16];
#pragma unroll
  for (int kk = 0; kk < DP / 16; ++kk) wmma::load_matrix_sync(qf[kk], qs + warp * 16 * L::ldK + kk * 16, L::ldK);
  int coord[kFragElems];
  fragmentCoordinates(sw, L::ldS, coord);
  FragC o[DP / 16];
#pragma unroll
  for (int n = 0; n < DP / 16; ++n) wmma::fill_fragment(o[n], 0.0f);
  __syncthreads();  // every warp holds its Q fragments before K/V tiles overwrite the Q tile

  auto issueTile = [&](int64_t j0, int buf) { issueKvTile<L, BC, DP>(smem, p, g, b, kvHead, j0, buf, tid); };

  const int r = lane >> 1, half = lane & 1;  // this lane's row of the warp's 16 and half of the tile
  const int64_t t = t0 + warp * 16 + r;
  float m = kNegInf, l = 0.0f;  // running max (base 2) and sum of the row; equal in both lanes
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

    // S_w = Q_w · K_tileᵀ: K row j as column j of a col-major B operand.
#pragma unroll
    for (int n = 0; n < BC / 16; ++n) {
      FragC s;
      wmma::fill_fragment(s, 0.0f);
#pragma unroll
      for (int kk = 0; kk < DP / 16; ++kk) {
        FragBT kb;
        wmma::load_matrix_sync(kb, ks + n * 16 * L::ldK + kk * 16, L::ldK);
        wmma::mma_sync(s, qf[kk], kb, s);
      }
      wmma::store_matrix_sync(sw + n * 16, s, L::ldS, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax of row r over this lane's half of the tile.
    float x[kHalf];
    float tileMax = kNegInf;
#pragma unroll
    for (int i = 0; i < kHalf; i += 4) {
      const float4 s4 = *reinterpret_cast<const float4*>(sw + r * L::ldS + half * kHalf + i);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = half * kHalf + i + e;
        const bool visible = keyOk[c] && g.causalAllows(t, j0 + c);
        x[i + e] = visible ? component(s4, e) * g.scaleLog2 : kNegInf;
        tileMax = fmaxf(tileMax, x[i + e]);
      }
    }
    tileMax = fmaxf(tileMax, __shfl_xor_sync(kAllLanes, tileMax, 1));
    const float mNew = fmaxf(m, tileMax);
    const float mRef = mNew == kNegInf ? 0.0f : mNew;  // no visible key yet: every term is 0
    const float alpha = exp2f(m - mRef);
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < kHalf; ++i) {
      // P is rounded to bf16 for the P·V product; l sums the rounded values it will multiply.
      x[i] = __bfloat162float(__float2bfloat16_rn(exp2f(x[i] - mRef)));
      sum += x[i];
    }
    sum += __shfl_xor_sync(kAllLanes, sum, 1);
    l = l * alpha + sum;
    m = mNew;
    __syncwarp();  // every lane has read its scores before P overwrites them
#pragma unroll
    for (int i = 0; i < kHalf; i += 2) {
      *reinterpret_cast<__nv_bfloat162*>(pw + r * L::ldP + half * kHalf + i) = __floats2bfloat162_rn(x[i], x[i + 1]);
    }
    if (half == 0) rowScale[r] = alpha;
    __syncwarp();

    // O_w ← α·O_w + P·V.
#pragma unroll
    for (int n = 0; n < DP / 16; ++n) {
#pragma unroll
      for (int i = 0; i < kFragElems; ++i) o[n].x[i] *= rowScale[coord[i] >> 4];
    }
    FragA pa[BC / 16];
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk) wmma::load_matrix_sync(pa[kk], pw + kk * 16, L::ldP);
#pragma unroll
    for (int n = 0; n < DP / 16; ++n) {
#pragma unroll
      for (int kk = 0; kk < BC / 16; ++kk) {
        FragB vb;
        wmma::load_matrix_sync(vb, vs + kk * 16 * L::ldK + n * 16, L::ldK);
        wmma::mma_sync(o[n], pa[kk], vb, o[n]);
      }
    }
    __syncthreads();  // every warp is done with stage `buf` before the next iteration refills it
  }

  if (half == 0) {
    rowScale[r] = l > 0.0f ? 1.0f / l : 0.0f;
    if (t < g.seqQ) p.lse[g.statRow(b, h) + t] = l > 0.0f ? m * kLn2 + logf(l) : kNegInf;
  }
  // O_w / l → bf16, one 16×16 fragment at a time through the warp's score tile.
  const int validRows = min(16, rows - warp * 16);
#pragma unroll
  for (int n = 0; n < DP / 16; ++n) {
    __syncwarp();
    wmma::store_matrix_sync(sw, o[n], L::ldS, wmma::mem_row_major);
    __syncwarp();
    for (int e = lane; e < 256; e += 32) sw[(e >> 4) * L::ldS + (e & 15)] *= rowScale[e >> 4];
    __syncwarp();
    if (validRows > 0) {
      writeTile(p.out + g.qRow(b, t0 + warp * 16, h) + n * 16, g.qStride(), sw, L::ldS, validRows, dim - n * 16, 1.0f,
                p.vec);
    }
  }
}

template <int DP, int BC>
void launchForwardWmma(const ForwardParams<Bf16>& p) {
  using L = LayoutFwd<DP, BC>;
  const int64_t tiles = (p.geo.seqQ + L::kRows - 1) / L::kRows;
  launch(forwardWmmaKernel<DP, BC>, "attention forwardWmmaKernel", tiles * p.geo.batch * p.geo.headsQ, L::kThreads,
         L::bytes, p);
}

// ---------------------------------------------------------------------------------------------
// SIMT kernel. Block: 4 warps × 8 query rows = 32 rows of one (b, h), and one 32·NV-dimension
// slice of the output (all of it when D ≤ 128). Per key tile of 32 keys:
//   1. K tile (in D chunks) → shared; Q rows → shared once (per chunk when D > 128); V's slice.
//   2. lane j computes the 8 scores of its warp's rows against key j (16-byte broadcast reads of Q,
//      conflict-free 16-byte reads of K row j);
//   3. per row: warp max and sum by shuffles, α rescale, P → the warp's [8, 32] shared tile;
//   4. lane owns output dimensions lane + 32·v (v < NV): O[r][d] = α·O[r][d] + Σ_j P[r][j]·V[j][d].
// Shared memory (LayoutFwdSimt): D = 128: 16 KB Q + 16.5 KB K + 16 KB V + 4 KB P ≈ 53 KB (opt-in);
// D = 64: 29 KB. Registers: 8 rows × NV accumulators, 8 scores, and the compiler's hoisted loads:
// 180–240 under the bound of 2 blocks (8 warps) per SM, without spills.
struct LayoutFwdSimt {
  size_t kOff, vOff, pOff, keyOkOff, bytes;  // the Q rows start at 0
  __host__ __device__ explicit LayoutFwdSimt(const SimtSplit& s) {
    kOff = s.rowTileBytes();
    vOff = kOff + s.colTileBytes();
    pOff = vOff + align128(size_t{4} * kSimtCols * s.slice);
    keyOkOff = pOff + kSimtWarpTileBytes;
    bytes = keyOkOff + align128(size_t{4} * kSimtCols);
  }
};

template <typename D, int NV>
__global__ void __launch_bounds__(kSimtThreads, 2) forwardSimtKernel(ForwardParams<D> p) {
  constexpr int R = kSimtRowsPerWarp;
  const Geometry& g = p.geo;
  const SimtSplit split(g.dim, NV);
  const LayoutFwdSimt lay(split);
  unsigned char* smem = dynamicSmem();
  float* qs = reinterpret_cast<float*>(smem);                 // [32 rows, chunk]
  float* ks = reinterpret_cast<float*>(smem + lay.kOff);      // [32 keys, chunk + 4]
  float* vs = reinterpret_cast<float*>(smem + lay.vOff);      // [32 keys, slice]
  float* ps = reinterpret_cast<float*>(smem + lay.pOff);      // [4 warps][8 rows][32 keys]
  int* keyOk = reinterpret_cast<int*>(smem + lay.keyOkOff);  // [32 keys]
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  float* pw = ps + warp * R * kSimtCols;

  const int64_t tiles = (g.seqQ + kSimtRows - 1) / kSimtRows;
  const int64_t units = g.batch * g.headsQ * split.slices;  // blocks per query tile
  const int64_t unit = blockIdx.x % units;
  const int64_t b = unit / (g.headsQ * split.slices), h = unit / split.slices % g.headsQ;
  const int64_t kvHead = h / g.group;
  const int d0 = static_cast<int>(unit % split.slices) * split.slice;  // this block's output slice
  const int64_t t0 = (tiles - 1 - blockIdx.x / units) * kSimtRows;
  const int rows = static_cast<int>(imin(kSimtRows, g.seqQ - t0));
  const int dim = static_cast<int>(g.dim);
  const int sliceDims = min(split.slice, dim - d0);

  const D* qBase = p.q + g.qRow(b, t0, h);
  if (split.resident()) {
    stageTile(qs, split.rowLd(), qBase, g.qStride(), kSimtRows, rows, dim, split.chunk, p.vec, tid, kSimtThreads);
  }
  float m[R], l[R], acc[R][NV];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    m[r] = kNegInf;
    l[r] = 0.0f;
#pragma unroll
    for (int v = 0; v < NV; ++v) acc[r][v] = 0.0f;
  }

  const int64_t keyEnd = g.keyEnd(t0 + rows);
  for (int64_t j0 = 0; j0 < keyEnd; j0 += kSimtCols) {
    const int keys = static_cast<int>(imin(kSimtCols, g.seqK - j0));
    const D* kBase = p.k + g.kRow(b, j0, kvHead);
    float s[R];
#pragma unroll
    for (int r = 0; r < R; ++r) s[r] = 0.0f;
    for (int c = 0; c < split.chunks; ++c) {
      const int c0 = c * split.chunk, cols = min(split.chunk, dim - c0);
      __syncthreads();  // the previous chunk's (or tile's) K, Q, V, P and key bits are read
      stageTile(ks, split.colLd(), kBase + c0, g.kStride(), kSimtCols, keys, cols, split.chunk, p.vec, tid,
                kSimtThreads);
      if (!split.resident()) {
        stageTile(qs, split.rowLd(), qBase + c0, g.qStride(), kSimtRows, rows, cols, split.chunk, p.vec, tid,
                  kSimtThreads);
      }
      if (c == 0) {
        stageTile(vs, split.slice, p.v + g.kRow(b, j0, kvHead) + d0, g.kStride(), kSimtCols, keys, sliceDims,
                  split.slice, p.vec, tid, kSimtThreads);
        if (tid < kSimtCols) keyOk[tid] = g.keyAllowed(b, j0 + tid);
      }
      __syncthreads();
      const float4* kRow4 = reinterpret_cast<const float4*>(ks + lane * split.colLd());
      for (int d4 = 0; d4 < split.chunk / 4; ++d4) {
        const float4 k4 = kRow4[d4];
#pragma unroll
        for (int r = 0; r < R; ++r) {
          s[r] = dot4(reinterpret_cast<const float4*>(qs + (warp * R + r) * split.rowLd())[d4], k4, s[r]);
        }
      }
    }

    // Online softmax per row (warp-uniform m, l); lane j holds key j0 + j.
    const bool keyVisible = keyOk[lane];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t t = t0 + warp * R + r;
      const float x = keyVisible && g.causalAllows(t, j0 + lane) ? s[r] * g.scaleLog2 : kNegInf;
      const float mNew = fmaxf(m[r], warpMax(x));
      const float mRef = mNew == kNegInf ? 0.0f : mNew;
      const float alpha = exp2f(m[r] - mRef);
      const float prob = exp2f(x - mRef);
      l[r] = l[r] * alpha + warpSum(prob);
      m[r] = mNew;
#pragma unroll
      for (int v = 0; v < NV; ++v) acc[r][v] *= alpha;
      pw[r * kSimtCols + lane] = prob;
    }
    __syncwarp();

    // O += P·V over the tile's 32 keys, 4 at a time.
    for (int j4 = 0; j4 < kSimtCols / 4; ++j4) {
      float4 p4[R];
#pragma unroll
      for (int r = 0; r < R; ++r) p4[r] = reinterpret_cast<const float4*>(pw + r * kSimtCols)[j4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float vv[NV];
#pragma unroll
        for (int v = 0; v < NV; ++v) vv[v] = vs[(4 * j4 + e) * split.slice + lane + 32 * v];
#pragma unroll
        for (int r = 0; r < R; ++r) {
#pragma unroll
          for (int v = 0; v < NV; ++v) acc[r][v] = fmaf(component(p4[r], e), vv[v], acc[r][v]);
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t t = t0 + warp * R + r;
    if (t >= g.seqQ) break;
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    D* out = p.out + g.qRow(b, t, h) + d0;
#pragma unroll
    for (int v = 0; v < NV; ++v) {
      if (lane + 32 * v < sliceDims) out[lane + 32 * v] = fromFloat<D>(acc[r][v] * inv);
    }
    if (d0 == 0 && lane == 0) p.lse[g.statRow(b, h) + t] = l[r] > 0.0f ? m[r] * kLn2 + logf(l[r]) : kNegInf;
  }
}

template <typename D, int NV>
void launchForwardSimt(const ForwardParams<D>& p) {
  const SimtSplit split(p.geo.dim, NV);
  const int64_t tiles = (p.geo.seqQ + kSimtRows - 1) / kSimtRows;
  launch(forwardSimtKernel<D, NV>, "attention forwardSimtKernel", tiles * p.geo.batch * p.geo.headsQ * split.slices,
         kSimtThreads, LayoutFwdSimt(split).bytes, p);
}

}  // namespace

template <typename T>
void attention(const AttentionArgsT<T>& a) {
  if (a.batch == 0 || a.seqQ == 0 || a.headsQ == 0) return;
  using D = DeviceType<T>;
  const ForwardParams<D> p{devicePtr(a.q), devicePtr(a.k), devicePtr(a.v), devicePtr(a.out), a.lse,
                           makeGeometry(a.batch, a.seqQ, a.seqK, a.headsQ, a.headsKv, a.headDim, a.scale, a.causal,
                                        a.keyMask),
                           rowsVectorizable<D>(a.headDim, {a.q, a.k, a.v, a.out})};
  if constexpr (std::is_same_v<D, Bf16>) {
    if (a.headDim <= 64) return launchForwardWmma<64, 64>(p);
    if (a.headDim <= 128) return launchForwardWmma<128, 32>(p);
  }
  switch (simtDimsPerLane(a.headDim)) {
    case 1: return launchForwardSimt<D, 1>(p);
    case 2: return launchForwardSimt<D, 2>(p);
    default: return launchForwardSimt<D, 4>(p);
  }
}

template void attention<float>(const AttentionArgsT<float>&);
template void attention<bf16>(const AttentionArgsT<bf16>&);

}  // namespace rlhf::cuda
