// Block-tiled matrix products for kernels that fuse their own work into a GEMM's epilogue: a thread
// block computes one kBM x kBN tile of C = A·B with float32 accumulation and leaves it in shared
// memory (float, row stride kLdC) for the caller to consume.
//
//   A is [M, K] and B is [K, N] as the product sees them; each is stored either K-major (k is the
//   contiguous index: A as [M][K] rows, B as [N][K] rows, i.e. Bᵀ row-major) or MN-major (m or n is
//   contiguous: A as [K][M] rows, B as [K][N] rows). The storage rows may be gathered through a
//   row map (row r of the operand is base + rowMap[r]·ld), and everything outside an operand's
//   extents reads as zero, so tiles may overhang M, N and K.
//
// Pipeline: kBK-deep slices of both operands are copied global -> shared with cp.async (16-byte
// chunks; a scalar fallback fills chunks that are unaligned or cut by an extent) into a ring of
// kStages buffers, kStages − 1 slices ahead of the math. The staged tiles keep the operand's
// storage order, padded per row so that the math reads them without bank conflicts.
//
// Math:
//   bfloat16: tensor cores through WMMA bf16 16x16x16 fragments (sm_80+), float accumulators.
//     128 threads = 4 warps in 2 x 2, each warp owns a 64 x 64 sub-tile (4 x 4 fragments).
//   float32: SIMT FMA, 256 threads in 16 x 16, each owns 8 x 8 outputs; per 4-deep k step it reads
//     8 float4 of A and 8 of B from shared memory for 256 FMAs. Each output is summed in k order.
//
// Shared memory: max(kStages stage buffers, the C tile) = 67,584 bytes for both types (the C tile
// reuses the stage buffers once the k loop is done), so kernels must opt in above 48 KiB.
#pragma once

#include <cuda_bf16.h>
#include <mma.h>

#include <cstdint>
#include <type_traits>

namespace rlhf::cuda::tile {

constexpr int kBM = 128;  // tile rows (m)
constexpr int kBN = 128;  // tile columns (n)
// Row stride of the float C tile: a multiple of 4 floats (WMMA stores) and an odd number of 16-byte
// units (33), so float4 reads of one column position by 8 consecutive rows hit 8 distinct banks.
constexpr int kLdC = kBN + 4;
constexpr int kStages = 3;

// Which index of an operand is contiguous in memory.
enum class Major { K, MN };

template <typename D>
struct Config;
template <>
struct Config<__nv_bfloat16> {
  static constexpr int kThreads = 128;
  static constexpr int kBK = 32;
  // 8 elements = 16 bytes: consecutive staged rows start 80 (K-major) or 272 (MN-major) bytes apart,
  // so the 8 rows of 16 bytes that a fragment load reads at once fall in distinct bank groups.
  static constexpr int kPad = 8;
};
template <>
struct Config<float> {
  static constexpr int kThreads = 256;
  static constexpr int kBK = 16;
  // 4 floats: K-major rows 80 bytes apart (float4 reads by 8 consecutive n hit distinct bank
  // groups), MN-major rows 528 bytes apart (16-byte aligned for cp.async and float4).
  static constexpr int kPad = 4;
};

template <typename D>
struct Layout {
  static constexpr int kThreads = Config<D>::kThreads;
  static constexpr int kBK = Config<D>::kBK;
  static constexpr int kVec = 16 / static_cast<int>(sizeof(D));  // elements per 16-byte chunk
  static constexpr int kLdK = kBK + Config<D>::kPad;              // K-major staged tile [128][kBK]
  static constexpr int kLdMN = kBM + Config<D>::kPad;             // MN-major staged tile [kBK][128]
  static constexpr int kOperandElems = kBM * kLdK > kBK * kLdMN ? kBM * kLdK : kBK * kLdMN;
  static constexpr int kOperandBytes = kOperandElems * static_cast<int>(sizeof(D));
  static constexpr int kStageBytes = 2 * kOperandBytes;
  static constexpr int kCBytes = kBM * kLdC * static_cast<int>(sizeof(float));
  static constexpr int kSmemBytes = kStages * kStageBytes > kCBytes ? kStages * kStageBytes : kCBytes;
  static_assert(kBM == kBN, "MN-major staging uses one row stride for A and B");
  static_assert(kOperandBytes % 128 == 0, "stage buffers keep the 128-byte alignment of shared memory");
};

// One operand in global memory: element (r, c) of its storage is row(r)[c], for r < rows, c < cols
// (rows and cols are the storage extents: [M or N, K] when K-major, [K, M or N] when MN-major).
template <typename D>
struct Operand {
  const D* base;
  int64_t ld;              // elements between storage rows
  const int32_t* rowMap;   // storage row r is base + rowMap[r]·ld; null: base + r·ld
  int rows, cols;
  bool vec;                // 16-byte copies allowed: base 16-byte aligned and ld a multiple of kVec

  __device__ __forceinline__ const D* row(int r) const {
    return base + static_cast<int64_t>(rowMap ? rowMap[r] : r) * ld;
  }
};

template <typename D>
inline Operand<D> makeOperand(const D* base, int64_t ld, const int32_t* rowMap, int rows, int cols) {
  const bool vec = reinterpret_cast<uintptr_t>(base) % 16 == 0 && ld % Layout<D>::kVec == 0;
  return Operand<D>{base, ld, rowMap, rows, cols, vec};
}

// ---------------------------------------------------------------------------------------------
// cp.async (sm_80+): 16 bytes global -> shared, bypassing L1; `bytes` = 0 writes 16 zero bytes.

__device__ __forceinline__ void copyAsync16(void* sharedDst, const void* globalSrc, int bytes) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(sharedDst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(globalSrc), "r"(bytes) : "memory");
}
__device__ __forceinline__ void commitCopies() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void waitCopies() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

template <typename D>
__device__ __forceinline__ D zeroOf() {
  if constexpr (std::is_same_v<D, float>) return 0.0f;
  else return __float2bfloat16_rn(0.0f);
}

// Stages storage rows [r0, r0 + R) x columns [c0, c0 + C) of `op` into dst (row stride C + pad),
// zeros outside the extents. Every thread of the block calls it; chunks are spread round-robin.
template <typename D, int R, int C>
__device__ __forceinline__ void loadTile(D* dst, const Operand<D>& op, int r0, int c0) {
  using L = Layout<D>;
  constexpr int kLd = C + Config<D>::kPad;
  constexpr int kPerRow = C / L::kVec;
  constexpr int kChunks = R * kPerRow;
  static_assert(C % L::kVec == 0 && kChunks % L::kThreads == 0, "tile must split evenly into chunks");
#pragma unroll
  for (int i = 0; i < kChunks / L::kThreads; ++i) {
    const int chunk = static_cast<int>(threadIdx.x) + i * L::kThreads;
    const int r = chunk / kPerRow, c = (chunk % kPerRow) * L::kVec;
    D* d = dst + r * kLd + c;
    const int gr = r0 + r, gc = c0 + c;
    const bool rowIn = gr < op.rows;
    const bool none = !rowIn || gc >= op.cols;
    if (op.vec && (none || gc + L::kVec <= op.cols)) {
      copyAsync16(d, none ? op.base : op.row(gr) + gc, none ? 0 : 16);
    } else {
      const D* src = rowIn ? op.row(gr) + gc : op.base;
#pragma unroll
      for (int e = 0; e < L::kVec; ++e) d[e] = rowIn && gc + e < op.cols ? src[e] : zeroOf<D>();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The math of one staged k slice, per element type.

// bfloat16: WMMA. Warp w owns rows wm..wm+63 and columns wn..wn+63 of the tile.
template <Major MA, Major MB>
class WmmaTile {
  using L = Layout<__nv_bfloat16>;
  using ALayout = std::conditional_t<MA == Major::K, nvcuda::wmma::row_major, nvcuda::wmma::col_major>;
  using BLayout = std::conditional_t<MB == Major::K, nvcuda::wmma::col_major, nvcuda::wmma::row_major>;
  nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> acc_[4][4];

  __device__ static int warpRow() { return static_cast<int>(threadIdx.x / 32 / 2) * 64; }
  __device__ static int warpCol() { return static_cast<int>(threadIdx.x / 32 % 2) * 64; }

 public:
  __device__ void clear() {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int j = 0; j < 4; ++j) nvcuda::wmma::fill_fragment(acc_[i][j], 0.0f);
    }
  }

  __device__ void step(const __nv_bfloat16* sA, const __nv_bfloat16* sB) {
    using namespace nvcuda;
    const int wm = warpRow(), wn = warpCol();
#pragma unroll
    for (int kk = 0; kk < L::kBK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, ALayout> a[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if constexpr (MA == Major::K) wmma::load_matrix_sync(a[i], sA + (wm + 16 * i) * L::kLdK + kk, L::kLdK);
        else wmma::load_matrix_sync(a[i], sA + kk * L::kLdMN + wm + 16 * i, L::kLdMN);
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, BLayout> b;
        if constexpr (MB == Major::K) wmma::load_matrix_sync(b, sB + (wn + 16 * j) * L::kLdK + kk, L::kLdK);
        else wmma::load_matrix_sync(b, sB + kk * L::kLdMN + wn + 16 * j, L::kLdMN);
#pragma unroll
        for (int i = 0; i < 4; ++i) wmma::mma_sync(acc_[i][j], a[i], b, acc_[i][j]);
      }
    }
  }

  // sC[m][n] = alpha · acc (sC: kBM x kLdC floats, 32-byte aligned).
  __device__ void store(float* sC, float alpha) {
    const int wm = warpRow(), wn = warpCol();
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
#pragma unroll
        for (int t = 0; t < acc_[i][j].num_elements; ++t) acc_[i][j].x[t] *= alpha;
        nvcuda::wmma::store_matrix_sync(sC + (wm + 16 * i) * kLdC + wn + 16 * j, acc_[i][j], kLdC,
                                        nvcuda::wmma::mem_row_major);
      }
    }
  }
};

// float32: SIMT. Thread (ty, tx) = (tid / 16, tid % 16) owns rows rowOf(0..7) and columns
// colOf(0..7). A K-major operand is read as float4 along k, so its rows are strided by 16 across
// the thread's outputs (ty + 16 i: one address per half-warp, a broadcast); an MN-major one as
// float4 along m, so its rows come in runs of 4 (4 ty + i and 64 + 4 ty + i). Same for columns.
template <Major MA, Major MB>
class SimtTile {
  using L = Layout<float>;
  float acc_[8][8];

  __device__ static int rowOf(int i) {
    const int ty = static_cast<int>(threadIdx.x) / 16;
    return MA == Major::K ? ty + 16 * i : (i / 4) * 64 + 4 * ty + i % 4;
  }
  __device__ static int colOf(int j) {
    const int tx = static_cast<int>(threadIdx.x) % 16;
    return MB == Major::K ? tx + 16 * j : (j / 4) * 64 + 4 * tx + j % 4;
  }

  // v[i][kk] = element (index(i), k + kk) of a staged operand.
  template <Major M>
  __device__ static void read(const float* s, int k, int firstIndex, float (&v)[8][4]) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      if constexpr (M == Major::K) {
        const float4 x = *reinterpret_cast<const float4*>(s + (firstIndex + 16 * i) * L::kLdK + k);
        v[i][0] = x.x;
        v[i][1] = x.y;
        v[i][2] = x.z;
        v[i][3] = x.w;
      } else if (i % 4 == 0) {
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
          const float4 x = *reinterpret_cast<const float4*>(s + (k + kk) * L::kLdMN + (i / 4) * 64 + firstIndex);
          v[i][kk] = x.x;
          v[i + 1][kk] = x.y;
          v[i + 2][kk] = x.z;
          v[i + 3][kk] = x.w;
        }
      }
    }
  }

 public:
  __device__ void clear() {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
#pragma unroll
      for (int j = 0; j < 8; ++j) acc_[i][j] = 0.0f;
    }
  }

  __device__ void step(const float* sA, const float* sB) {
    const int ty = static_cast<int>(threadIdx.x) / 16, tx = static_cast<int>(threadIdx.x) % 16;
#pragma unroll
    for (int k = 0; k < L::kBK; k += 4) {
      float a[8][4], b[8][4];
      read<MA>(sA, k, MA == Major::K ? ty : 4 * ty, a);
      read<MB>(sB, k, MB == Major::K ? tx : 4 * tx, b);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
#pragma unroll
          for (int j = 0; j < 8; ++j) acc_[i][j] = fmaf(a[i][kk], b[j][kk], acc_[i][j]);
        }
      }
    }
  }

  __device__ void store(float* sC, float alpha) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
#pragma unroll
      for (int j = 0; j < 8; ++j) sC[rowOf(i) * kLdC + colOf(j)] = alpha * acc_[i][j];
    }
  }
};

template <typename D, Major MA, Major MB>
struct TileFor {
  using type = SimtTile<MA, MB>;
};
template <Major MA, Major MB>
struct TileFor<__nv_bfloat16, MA, MB> {
  using type = WmmaTile<MA, MB>;
};
// The accumulator tile of a block: registers of every thread.
template <typename D, Major MA, Major MB>
using Tile = typename TileFor<D, MA, MB>::type;

// ---------------------------------------------------------------------------------------------
// The k loop: tile = A[m0 : m0+kBM, kBegin : kEnd] · B[kBegin : kEnd, n0 : n0+kBN] (A's and B's
// extents zero the overhang). kBegin is a multiple of kBK. Every thread of the block calls it.
// On return the stage buffers are free (all copies landed, every warp past its last read), so the
// caller may overwrite `smem`, e.g. with the C tile.
template <typename D, Major MA, Major MB>
__device__ __forceinline__ void mainloop(unsigned char* smem, Tile<D, MA, MB>& tile, const Operand<D>& a,
                                         const Operand<D>& b, int m0, int n0, int kBegin, int kEnd) {
  using L = Layout<D>;
  auto stageA = [&](int s) { return reinterpret_cast<D*>(smem + s * L::kStageBytes); };
  auto stageB = [&](int s) { return reinterpret_cast<D*>(smem + s * L::kStageBytes + L::kOperandBytes); };
  auto load = [&](int s, int k0) {
    if constexpr (MA == Major::K) loadTile<D, kBM, L::kBK>(stageA(s), a, m0, k0);
    else loadTile<D, L::kBK, kBM>(stageA(s), a, k0, m0);
    if constexpr (MB == Major::K) loadTile<D, kBN, L::kBK>(stageB(s), b, n0, k0);
    else loadTile<D, L::kBK, kBN>(stageB(s), b, k0, n0);
  };

  tile.clear();
  const int slices = kEnd > kBegin ? (kEnd - kBegin + L::kBK - 1) / L::kBK : 0;
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < slices) load(s, kBegin + s * L::kBK);
    commitCopies();  // possibly empty: keeps one group per slice for the wait below
  }
  for (int t = 0; t < slices; ++t) {
    waitCopies<kStages - 2>();  // slice t has landed (this thread's copies) ...
    __syncthreads();            // ... everyone's, and every warp is done with slice t − 1
    const int next = t + kStages - 1;
    if (next < slices) load(next % kStages, kBegin + next * L::kBK);  // into slice t − 1's buffer
    commitCopies();
    tile.step(stageA(t % kStages), stageB(t % kStages));
  }
  waitCopies<0>();
  __syncthreads();
}

}  // namespace rlhf::cuda::tile
