// Shared by the attention kernels (attention_forward.cu, attention_backward.cu; kernels.h §5):
// the problem's geometry and visibility rule, staging of tiles into shared memory, the WMMA
// fragment types of the bf16 tensor-core kernels, the shared-memory layout of the SIMT kernels and
// the launch helper.
//
// Layouts: q, out, dOut, dQ [B, T, Hq, D]; k, v, dK, dV [B, S, Hkv, D]; lse and the backward's
// rowsum(dO ∘ O) [B, Hq, T]. Rows of one head are strided: row t of query head h starts at
// ((b·T + t)·Hq + h)·D, consecutive rows Hq·D apart (Hkv·D for keys and values).
//
// Visibility: query t sits at key position S − T + t; it sees key j when the key is not masked
// (keyMask[b, j] != 0) and, if causal, j ≤ S − T + t. A query that sees no key gets out = 0,
// lse = −inf and zero gradients; the kernels never compute exp(−inf − (−inf)).
#pragma once

#include <mma.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>

#include "runtime.cuh"
#include "types.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "the attention kernels use bf16 tensor cores: compile for sm_80 or newer"
#endif

namespace rlhf::cuda::attn {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr unsigned kAllLanes = 0xffffffffu;

// Sizes and the visibility rule, shared by every kernel (passed by value).
struct Geometry {
  int64_t batch, seqQ, seqK;  // B, T, S
  int64_t headsQ, headsKv, dim, group;  // Hq, Hkv, D, Hq / Hkv
  int64_t offset;  // key position of query 0: S − T
  bool causal;
  float scale;
  float scaleLog2;  // scale · log2(e): scores are kept in base-2 units, exp becomes exp2
  const int32_t* keyMask;  // [B, S] or null

  __host__ __device__ int64_t qStride() const { return headsQ * dim; }
  __host__ __device__ int64_t kStride() const { return headsKv * dim; }
  // Element offsets of row t of query head h, of key row j of kv head g, and of the [T] statistics
  // row (lse, rowsum(dO ∘ O)) of query head h.
  __device__ int64_t qRow(int64_t b, int64_t t, int64_t h) const { return ((b * seqQ + t) * headsQ + h) * dim; }
  __device__ int64_t kRow(int64_t b, int64_t j, int64_t g) const { return ((b * seqK + j) * headsKv + g) * dim; }
  __device__ int64_t statRow(int64_t b, int64_t h) const { return (b * headsQ + h) * seqQ; }
  // Key j exists and is not masked out.
  __device__ bool keyAllowed(int64_t b, int64_t j) const {
    return j < seqK && (keyMask == nullptr || keyMask[b * seqK + j] != 0);
  }
  __device__ bool causalAllows(int64_t t, int64_t j) const { return !causal || j <= offset + t; }
  // Queries [0, tEnd) see no key at or after keyEnd(tEnd): the key loop's bound.
  __device__ int64_t keyEnd(int64_t tEnd) const {
    if (!causal) return seqK;
    const int64_t end = offset + tEnd;
    return end < 0 ? 0 : (end > seqK ? seqK : end);
  }
  // Key j is seen by no query before firstQuery(j): the dK/dV query loop's start.
  __device__ int64_t firstQuery(int64_t j) const {
    if (!causal) return 0;
    const int64_t first = j - offset;
    return first < 0 ? 0 : (first > seqQ ? seqQ : first);
  }
};

inline Geometry makeGeometry(int64_t batch, int64_t seqQ, int64_t seqK, int64_t headsQ, int64_t headsKv,
                             int64_t headDim, float scale, bool causal, const int32_t* keyMask) {
  return {batch, seqQ, seqK, headsQ, headsKv, headDim, headsQ / headsKv, seqK - seqQ, causal, scale, scale * kLog2e, keyMask};
}

// 16-byte global loads are possible when every row start is 16-byte aligned: D a multiple of the
// elements per 16 bytes and 16-byte aligned base pointers.
template <typename D>
bool rowsVectorizable(int64_t dim, std::initializer_list<const void*> pointers) {
  if (dim % static_cast<int64_t>(16 / sizeof(D)) != 0) return false;
  for (const void* p : pointers) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  }
  return true;
}

// Copies rows [0, validRows) × columns [0, cols) of a global matrix (row stride `stride`
// elements) into shared memory dst[r·ld + c], converting to dst's element type, and fills the rest
// of the [rows, padCols] tile with zeros (padding must be zero, not garbage: 0 · NaN is NaN in a
// product). All `threads` threads of the block call it with the same arguments; it has no barrier.
// With `vec`, 16-byte chunks: then rowsVectorizable held, cols and padCols are multiples of
// 16 / sizeof(G), and ld · sizeof(S) and dst are 16-byte aligned.
template <typename S, typename G>
__device__ __forceinline__ void stageTile(S* dst, int ld, const G* src, int64_t stride, int rows, int validRows,
                                          int cols, int padCols, bool vec, int tid, int threads) {
  if (vec) {
    constexpr int kPer = 16 / sizeof(G);
    const int perRow = padCols / kPer;
    for (int c = tid; c < rows * perRow; c += threads) {
      const int r = c / perRow, col = (c - r * perRow) * kPer;
      uint4 raw = make_uint4(0u, 0u, 0u, 0u);
      if (r < validRows && col < cols) raw = *reinterpret_cast<const uint4*>(src + r * stride + col);
      if constexpr (std::is_same_v<S, G>) {
        *reinterpret_cast<uint4*>(dst + r * ld + col) = raw;
      } else {
        // bf16 → float32: the low half of each 32-bit word is the earlier element; a bf16's bits
        // are the high half of the float's (unpacked with shifts, not by aliasing the registers).
        static_assert(std::is_same_v<S, float> && std::is_same_v<G, __nv_bfloat16>, "bf16 -> float32 only");
        const unsigned words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
        for (int w = 0; w < 4; ++w) {
          dst[r * ld + col + 2 * w] = __uint_as_float(words[w] << 16);
          dst[r * ld + col + 2 * w + 1] = __uint_as_float(words[w] & 0xffff0000u);
        }
      }
    }
  } else {
    for (int e = tid; e < rows * padCols; e += threads) {
      const int r = e / padCols, col = e - r * padCols;
      const float x = (r < validRows && col < cols) ? toFloat(src[r * stride + col]) : 0.0f;
      dst[r * ld + col] = fromFloat<S>(x);
    }
  }
}

// Asynchronous 16-byte global → shared copies (cp.async, sm_80+), for double-buffered tiles: a
// copy has landed when waitAsyncCopies<N>() returns in the issuing thread with at most N later
// groups pending; a __syncthreads() then publishes it to the block. An invalid copy reads nothing
// and zero-fills the 16 bytes (src must still be a valid address).
__device__ __forceinline__ void copyAsync16(void* dst, const void* src, bool valid) {
  const unsigned shared = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared), "l"(src), "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void commitAsyncCopies() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void waitAsyncCopies() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// stageTile without type conversion, through asynchronous copies when `vec` (the caller commits
// and waits), else synchronously. The tile has at least one valid row.
template <typename T>
__device__ __forceinline__ void stageTileAsync(T* dst, int ld, const T* src, int64_t stride, int rows, int validRows,
                                               int cols, int padCols, bool vec, int tid, int threads) {
  if (!vec) return stageTile(dst, ld, src, stride, rows, validRows, cols, padCols, false, tid, threads);
  constexpr int kPer = 16 / sizeof(T);
  const int perRow = padCols / kPer;
  for (int c = tid; c < rows * perRow; c += threads) {
    const int r = c / perRow, col = (c - r * perRow) * kPer;
    const bool valid = r < validRows && col < cols;
    copyAsync16(dst + r * ld + col, valid ? src + r * stride + col : src, valid);
  }
}

// The block's dynamic shared memory (one declaration for every kernel; 128-byte aligned, and
// every region carved from it starts at a multiple of 128 bytes).
__device__ __forceinline__ unsigned char* dynamicSmem() {
  extern __shared__ __align__(128) unsigned char attnSmem[];
  return attnSmem;
}

__host__ __device__ constexpr size_t align128(size_t bytes) { return (bytes + 127) / 128 * 128; }
__host__ __device__ constexpr int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// Launches kernel<<<blocks, threads, smem>>> on the backend's stream, first raising the kernel's
// dynamic shared memory limit when it needs more than the default 48 KB (every sm_80+ card allows
// at least 99 KB per block; the kernels here stay under 80 KB).
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), const char* name, int64_t blocks, int threads, size_t smem, Args&&... args) {
  constexpr size_t kDefaultSmem = 48 * 1024;
  if (smem > kDefaultSmem) {
    check(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(smem)),
          name);
  }
  if (blocks > 0x7fffffff) throw CudaError(std::string(name) + ": too many thread blocks for one launch");
  kernel<<<static_cast<unsigned>(blocks), threads, smem, stream()>>>(std::forward<Args>(args)...);
  checkLaunch(name);
}

// ---------------------------------------------------------------------------------------------
// bf16 tensor cores through WMMA: 16×16×16 tiles, bf16 operands, float32 accumulators.

namespace wmma = nvcuda::wmma;
using Bf16 = __nv_bfloat16;
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, Bf16, wmma::row_major>;
using FragAT = wmma::fragment<wmma::matrix_a, 16, 16, 16, Bf16, wmma::col_major>;  // Aᵀ of a row-major tile
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, Bf16, wmma::row_major>;
using FragBT = wmma::fragment<wmma::matrix_b, 16, 16, 16, Bf16, wmma::col_major>;  // Bᵀ of a row-major tile
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
constexpr int kFragElems = FragC::num_elements;

// The query tile of a forward / dQ block: blocks enumerate (batch, query head) fastest and the
// query tiles from the last (heaviest under the causal mask) to the first.
struct QueryTile {
  int64_t b, h, kvHead, t0;
  int rows;  // valid rows of the tile (the last tile may be partial)
};
__device__ inline QueryTile queryTile(const Geometry& g, int tileRows) {
  const int64_t tiles = (g.seqQ + tileRows - 1) / tileRows;
  const int64_t pair = blockIdx.x % (g.batch * g.headsQ);
  QueryTile q;
  q.b = pair / g.headsQ;
  q.h = pair % g.headsQ;
  q.kvHead = q.h / g.group;
  q.t0 = (tiles - 1 - blockIdx.x / (g.batch * g.headsQ)) * tileRows;
  q.rows = static_cast<int>(imin(tileRows, g.seqQ - q.t0));
  return q;
}

// Issues the copies of key tile [j0, j0 + BC) of kv head `kvHead` into K/V stage `buf` of the
// layout L (K at the stage's start, V at vOff, the keys' visibility bits at keyOkOff), as one
// commit group; the caller waits for it.
template <typename L, int BC, int DP, typename Params>
__device__ __forceinline__ void issueKvTile(unsigned char* smem, const Params& p, const Geometry& g, int64_t b,
                                            int64_t kvHead, int64_t j0, int buf, int tid) {
  Bf16* ks = reinterpret_cast<Bf16*>(smem + buf * L::stageBytes);
  const int keys = static_cast<int>(imin(BC, g.seqK - j0));
  const int dim = static_cast<int>(g.dim);
  stageTileAsync(ks, L::ldK, p.k + g.kRow(b, j0, kvHead), g.kStride(), BC, keys, dim, DP, p.vec, tid, L::kThreads);
  stageTileAsync(ks + L::vOff / 2, L::ldK, p.v + g.kRow(b, j0, kvHead), g.kStride(), BC, keys, dim, DP, p.vec, tid,
                 L::kThreads);
  if (tid < BC) reinterpret_cast<int*>(smem + L::keyOkOff)[buf * BC + tid] = g.keyAllowed(b, j0 + tid);
  commitAsyncCopies();
}

// Where this lane's accumulator elements sit in the 16×16 tile: coord[i] = row·16 + column of
// frag.x[i]. The API leaves the element-to-lane mapping unspecified but fixed for a fragment type,
// so the warp reads it back by loading a tile whose entries are their own indices. `scratch` is
// 16 rows of `ld` floats of this warp's shared memory (ld ≥ 16, a multiple of 4, 32-byte aligned).
// The warp calls it together.
__device__ __forceinline__ void fragmentCoordinates(float* scratch, int ld, int (&coord)[kFragElems]) {
  const int lane = threadIdx.x & 31;
  for (int e = lane; e < 256; e += 32) scratch[(e >> 4) * ld + (e & 15)] = static_cast<float>(e);
  __syncwarp();
  FragC f;
  wmma::load_matrix_sync(f, scratch, ld, wmma::mem_row_major);
#pragma unroll
  for (int i = 0; i < kFragElems; ++i) coord[i] = static_cast<int>(f.x[i]);
  __syncwarp();
}

// Writes a warp's 16×16 float tile (scratch[r·ld + c], r < 16) to rows [0, validRows) and columns
// [0, validCols) of a bf16 global matrix (row stride `stride`), times `scale`. Each lane writes 8
// consecutive elements of one row (16 bytes when `vec`: then validCols is a multiple of 8 and dst is
// 16-byte aligned).
__device__ __forceinline__ void writeTile(Bf16* dst, int64_t stride, const float* scratch, int ld, int validRows,
                                          int validCols, float scale, bool vec) {
  const int lane = threadIdx.x & 31;
  const int r = lane >> 1, c0 = (lane & 1) * 8;
  if (r >= validRows || c0 >= validCols) return;
  const float* src = scratch + r * ld + c0;
  Bf16* out = dst + r * stride + c0;
  if (vec) {
    unsigned words[4];
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      words[w] = static_cast<unsigned>(__bfloat16_as_ushort(__float2bfloat16_rn(src[2 * w] * scale))) |
                 static_cast<unsigned>(__bfloat16_as_ushort(__float2bfloat16_rn(src[2 * w + 1] * scale))) << 16;
    }
    *reinterpret_cast<uint4*>(out) = make_uint4(words[0], words[1], words[2], words[3]);
  } else {
    for (int e = 0; e < 8 && c0 + e < validCols; ++e) out[e] = __float2bfloat16_rn(src[e] * scale);
  }
}

// ---------------------------------------------------------------------------------------------
// SIMT kernels (float32 for every D; bf16 when D > 128): a block of 4 warps, each warp owning 8
// "rows" (queries, or keys in the dK/dV kernel); the 32 lanes take 32 "columns" (keys, or queries)
// for the dot products and 32·NV output dimensions for the accumulations.

constexpr int kSimtWarps = 4;
constexpr int kSimtRowsPerWarp = 8;
constexpr int kSimtRows = kSimtWarps * kSimtRowsPerWarp;  // rows per block
constexpr int kSimtCols = 32;                             // columns per step (one per lane)
constexpr int kSimtThreads = kSimtWarps * 32;

// Output dimensions per lane: 32·NV ≥ D up to D = 128; beyond that NV = 4 and each block computes
// one 128-dimension slice of the output (the grid covers ceil(D/128) slices).
inline int simtDimsPerLane(int64_t dim) { return dim <= 32 ? 1 : (dim <= 64 ? 2 : 4); }

// How a SIMT block splits D. Dot products over D run in chunks of `chunk` columns: one chunk of
// 32·NV (zero-padded) when D ≤ 128, so the row operands stay resident in shared memory for the
// whole block and the staged column tile doubles as the accumulation operand; else 64-column
// chunks restaged per step, and the accumulation operand gets its own [32, 128] tile.
struct SimtSplit {
  int chunk, chunks;  // dot-product chunk width and count
  int slice, slices;  // output dimensions per block (32·NV) and blocks per row
  __host__ __device__ SimtSplit(int64_t dim, int nv) {
    slice = 32 * nv;
    slices = static_cast<int>((dim + slice - 1) / slice);
    chunk = dim <= slice ? slice : 64;
    chunks = static_cast<int>((dim + chunk - 1) / chunk);
  }
  __host__ __device__ bool resident() const { return chunks == 1; }
  __host__ __device__ int rowLd() const { return chunk; }      // row operands: broadcast reads
  __host__ __device__ int colLd() const { return chunk + 4; }  // column operands: lane j reads row j,
                                                                // 16-byte reads conflict-free
  __host__ __device__ size_t rowTileBytes() const { return align128(size_t{4} * kSimtRows * rowLd()); }
  __host__ __device__ size_t colTileBytes() const { return align128(size_t{4} * kSimtCols * colLd()); }
  // A [32, slice] tile of the accumulation operand, when it is not the column tile itself.
  __host__ __device__ size_t sliceTileBytes() const {
    return resident() ? 0 : align128(size_t{4} * kSimtCols * slice);
  }
};
// One [8, 32] float tile per warp (probabilities or dS) for the accumulation step.
constexpr size_t kSimtWarpTileBytes = align128(size_t{4} * kSimtWarps * kSimtRowsPerWarp * kSimtCols);

// Σ_{4 floats} a·b added to acc.
__device__ __forceinline__ float dot4(float4 a, float4 b, float acc) {
  acc = fmaf(a.x, b.x, acc);
  acc = fmaf(a.y, b.y, acc);
  acc = fmaf(a.z, b.z, acc);
  return fmaf(a.w, b.w, acc);
}

__device__ __forceinline__ float component(float4 v, int i) {
  return i == 0 ? v.x : (i == 1 ? v.y : (i == 2 ? v.z : v.w));
}

}  // namespace rlhf::cuda::attn
