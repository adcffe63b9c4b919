// The handwritten GEMM kernels (gemm.cuh): a SIMT kernel for every operand type (float32 math on
// shared-memory tiles), and a WMMA tensor-core kernel for bf16 operands.
//
// Both kernels read the operands through the same tile loader: element (r, c) of op(X) sits at
// x[r·rs + c·cs] with one of the strides 1 (a transpose only swaps the strides), so any transpose
// combination is a load pattern, and out-of-range elements load as zeros, so edge tiles need no
// special compute path. Every block owns one output tile of one batch item (one K-range of it under
// split-K); grid.x enumerates the tiles (M fastest), grid.z the batch items and K-splits.
#include <mma.h>

#include <algorithm>
#include <type_traits>

#include "../src/int_math.h"
#include "gemm.cuh"
#include "runtime.cuh"

namespace rlhf::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGridZ = 65535;

// How a kernel reads an operand op(X) of `rows` x `cols`: element (r, c) at x[r·rs + c·cs];
// contiguous along r when alongRows (rs == 1), else along c (cs == 1). `vectorized`: every run of
// 16 bytes along the contiguous dimension that a tile starts is 16-byte aligned (see vectorView).
struct OperandView {
  int64_t rs, cs;
  bool alongRows, vectorized;
};

// op(X) for X stored row-major [rows, cols] (or [cols, rows] when transposed).
OperandView operandView(bool transposed, int64_t rows, int64_t cols) {
  return transposed ? OperandView{1, rows, true, false} : OperandView{cols, 1, false, false};
}

// Enables 16-byte loads when the base pointer, the line stride (the stride that is not 1), the
// extent along the contiguous dimension and the batch stride are all multiples of 16 bytes. Tiles
// start at multiples of 16 elements along both dimensions (every tile size below is), so each run
// of V = 16 / sizeof(S) ≤ 8 elements that a tile loads is then aligned, and lies wholly inside
// op(X) or wholly outside it.
template <typename S>
OperandView vectorView(OperandView v, const S* base, int64_t rows, int64_t cols, int64_t batchStride) {
  constexpr int64_t V = 16 / sizeof(S);
  const int64_t line = v.alongRows ? v.cs : v.rs, extent = v.alongRows ? rows : cols;
  v.vectorized = reinterpret_cast<uintptr_t>(base) % 16 == 0 && line % V == 0 && extent % V == 0 &&
                 batchStride % V == 0;
  return v;
}

template <typename D>
__device__ __forceinline__ D zeroOf() {
  return fromFloat<D>(0.0f);
}

// Element q of a 16-byte run loaded as one uint4 (little-endian: bf16 element 2w is the low half
// of word w).
template <typename S>
__device__ __forceinline__ S runElement(const uint4& raw, int q) {
  constexpr int kPerWord = 4 / static_cast<int>(sizeof(S));
  const unsigned words[4] = {raw.x, raw.y, raw.z, raw.w};  // q is unrolled: words stay in registers
  const unsigned word = words[q / kPerWord];
  if constexpr (std::is_same_v<S, float>) {
    return __uint_as_float(word);
  } else {
    return __ushort_as_bfloat16(static_cast<unsigned short>(q % 2 ? word >> 16 : word & 0xffffu));
  }
}

// A loaded element as a tile holds it: bf16 tiles (tensor cores) copy it, float tiles convert it
// and apply the dropout mask (keyed by the element's offset) when on. Out-of-range elements are 0.
template <typename S, typename D>
__device__ __forceinline__ D tileElement(S s, bool valid, const DropoutMask& mask, int64_t offset) {
  if constexpr (std::is_same_v<D, __nv_bfloat16>) {
    static_assert(std::is_same_v<S, __nv_bfloat16>, "bf16 tiles hold bf16 operands");
    return valid ? s : zeroOf<D>();
  } else {
    if (!valid) return 0.0f;
    const float v = toFloat(s);
    return mask.on ? mask.apply(v, offset) : v;
  }
}

// Copies the R x C tile at (r0, c0) of op(X) (rows x cols, read through `view`) into
// dst[r·dr + c·dc], zero outside op(X), through `mask` (keyed by the element's offset r·rs + c·cs
// in X) when on. Consecutive threads take consecutive elements along the contiguous dimension so
// that a warp reads contiguous memory; vectorized, each thread loads a run of V elements at once.
template <int R, int C, typename S, typename D>
__device__ __forceinline__ void loadTile(const S* __restrict__ x, const OperandView& view, int64_t rows,
                                         int64_t cols, int64_t r0, int64_t c0, const DropoutMask& mask,
                                         D* __restrict__ dst, int dr, int dc) {
  if (view.vectorized) {
    constexpr int V = 16 / sizeof(S);
    static_assert(R % V == 0 && C % V == 0, "tile sides must hold whole 16-byte runs");
    const int runsPerLine = view.alongRows ? R / V : C / V;
    for (int idx = threadIdx.x; idx < R * C / V; idx += blockDim.x) {
      const int line = idx / runsPerLine, start = (idx % runsPerLine) * V;
      const int r = view.alongRows ? start : line, c = view.alongRows ? line : start;
      const int64_t gr = r0 + r, gc = c0 + c;
      const bool inside = gr < rows && gc < cols;  // the whole run is, or none of it (vectorView)
      const int64_t base = gr * view.rs + gc * view.cs;  // the run: offsets base .. base + V − 1
      S vals[V];
      if (inside) {
        const uint4 raw = *reinterpret_cast<const uint4*>(x + base);
#pragma unroll
        for (int q = 0; q < V; ++q) vals[q] = runElement<S>(raw, q);
      } else {
#pragma unroll
        for (int q = 0; q < V; ++q) vals[q] = zeroOf<S>();
      }
#pragma unroll
      for (int q = 0; q < V; ++q) {
        const int rr = view.alongRows ? r + q : r, cc = view.alongRows ? c : c + q;
        dst[rr * dr + cc * dc] = tileElement<S, D>(vals[q], inside, mask, base + q);
      }
    }
  } else {
    for (int idx = threadIdx.x; idx < R * C; idx += blockDim.x) {
      const int r = view.alongRows ? idx % R : idx / C;
      const int c = view.alongRows ? idx / R : idx % C;
      const int64_t gr = r0 + r, gc = c0 + c;
      const bool valid = gr < rows && gc < cols;
      const int64_t offset = gr * view.rs + gc * view.cs;
      const S s = valid ? x[offset] : zeroOf<S>();
      dst[r * dr + c * dc] = tileElement<S, D>(s, valid, mask, offset);
    }
  }
}

// n consecutive floats from shared memory (n = 2 or 4: one vector load; the callers keep them aligned).
template <int N>
__device__ __forceinline__ void loadShared(const float* p, float (&v)[N]) {
  if constexpr (N == 4) {
    const float4 t = *reinterpret_cast<const float4*>(p);
    v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
  } else if constexpr (N == 2) {
    const float2 t = *reinterpret_cast<const float2*>(p);
    v[0] = t.x, v[1] = t.y;
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) v[i] = p[i];
  }
}

// ---------------------------------------------------------------------------------------------
// SIMT kernel. Block: 256 threads on a BM x BN output tile, K in steps of BK = 16 through shared
// memory (A's tile k-major, As[k][m], so a thread's TM rows are one vector load; B's tile Bs[k][n]).
// Thread (ty, tx) owns the TM x TN outputs at rows ty·TM.., cols tx·TN... Tile shapes (gemmTiled
// picks one): 64 x 64 in general; 128 x 16 and 16 x 128 for LoRA's rank-r products, whose output
// has few columns (xa, dxa, dB: N = r) or few rows (dA: M = r), so no compute is spent on padding.
//
// Split-K (float32 C, beta 0 or 1, no bias or output mask, one batch item): grid.z cuts K into
// `splits` ranges of kChunk and each block atomically adds alpha · its partial product to C, which
// the launcher zeroes first when beta = 0. It gives the tall reductions of dA and dB (K = tokens) and
// the short outputs of xa and dxa enough blocks to fill the GPU.

template <typename TA, typename TB, typename TC>
struct SimtParams {
  const DeviceType<TA>* a;
  const DeviceType<TB>* b;
  DeviceType<TC>* c;
  const DeviceType<TC>* bias;
  int64_t m, n, k, strideA, strideB, strideC;
  OperandView viewA, viewB;
  float alpha, beta;
  DropoutMask maskA, maskB, maskC;
  int64_t tilesM;
  int splits;
  int64_t kChunk;
};

constexpr int kSimtBK = 16;
constexpr int kSimtPad = 4;  // keeps rows 16-byte aligned and spreads the loader's stores over banks

template <int BM, int BN, int TM, int TN, typename TA, typename TB, typename TC>
__global__ void __launch_bounds__(kThreads) gemmSimtKernel(const SimtParams<TA, TB, TC> p) {
  using DC = DeviceType<TC>;
  constexpr int BK = kSimtBK, TX = BN / TN;
  static_assert(TX * (BM / TM) == kThreads, "one thread per TM x TN block of the tile");
  __shared__ __align__(16) float As[BK][BM + kSimtPad];
  __shared__ __align__(16) float Bs[BK][BN + kSimtPad];
  const int tx = threadIdx.x % TX, ty = threadIdx.x / TX;
  const int64_t m0 = (blockIdx.x % p.tilesM) * BM, n0 = (blockIdx.x / p.tilesM) * BN;
  const int64_t itemIndex = blockIdx.z / p.splits;
  const int64_t kBegin = (blockIdx.z % p.splits) * p.kChunk;
  const int64_t kEnd = kBegin + p.kChunk < p.k ? kBegin + p.kChunk : p.k;
  const auto* a = p.a + itemIndex * p.strideA;
  const auto* b = p.b + itemIndex * p.strideB;
  DC* c = p.c + itemIndex * p.strideC;

  float acc[TM][TN] = {};
  for (int64_t k0 = kBegin; k0 < kEnd; k0 += BK) {
    // op(A) tile (rows m, cols k) into As[k][m]; op(B) tile (rows k, cols n) into Bs[k][n]. kChunk
    // is a multiple of BK, so a tile never crosses into the next split's range.
    loadTile<BM, BK>(a, p.viewA, p.m, p.k, m0, k0, p.maskA, &As[0][0], 1, BM + kSimtPad);
    loadTile<BK, BN>(b, p.viewB, p.k, p.n, k0, n0, p.maskB, &Bs[0][0], BN + kSimtPad, 1);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float av[TM], bv[TN];
      loadShared<TM>(&As[kk][ty * TM], av);
      loadShared<TN>(&Bs[kk][tx * TN], bv);
#pragma unroll
      for (int i = 0; i < TM; ++i) {
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
      }
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t row = m0 + ty * TM + i;
    if (row >= p.m) break;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int64_t col = n0 + tx * TN + j;
      if (col >= p.n) break;
      const int64_t off = row * p.n + col;
      float v = p.alpha * acc[i][j];
      if constexpr (std::is_same_v<DC, float>) {
        if (p.splits > 1) {
          atomicAdd(c + off, v);
          continue;
        }
      }
      if (p.maskC.on) v = p.maskC.apply(v, off);
      if (p.bias) v += toFloat(p.bias[col]);
      if (p.beta != 0.0f) v += p.beta * toFloat(c[off]);
      c[off] = fromFloat<DC>(v);
    }
  }
}


template <int BM, int BN, int TM, int TN, typename TA, typename TB, typename TC>
void launchSimt(const GemmOp<TA, TB, TC>& op) {
  SimtParams<TA, TB, TC> p{};
  p.bias = devicePtr(op.bias);
  p.m = op.m, p.n = op.n, p.k = op.k;
  p.strideA = op.strideA, p.strideB = op.strideB, p.strideC = op.strideC;
  p.viewA = vectorView(operandView(op.transA, op.m, op.k), devicePtr(op.a), op.m, op.k,
                       op.batch > 1 ? op.strideA : 0);
  p.viewB = vectorView(operandView(op.transB, op.k, op.n), devicePtr(op.b), op.k, op.n,
                       op.batch > 1 ? op.strideB : 0);
  p.alpha = op.alpha, p.beta = op.beta;
  p.maskA = op.maskA, p.maskB = op.maskB, p.maskC = op.maskC;
  p.tilesM = ceilDiv(op.m, BM);
  const int64_t tiles = p.tilesM * ceilDiv(op.n, BN);
  if (tiles > 0x7fffffff) {
    throw CudaError("gemm: output too large for one launch (" + std::to_string(tiles) + " tiles)");
  }

  // Split-K where the output tiles alone would leave most multiprocessors idle, keeping at least
  // 8 BK-steps per split.
  p.splits = 1;
  p.kChunk = op.k;
  const bool canSplit = std::is_same_v<TC, float> && op.batch == 1 && !op.bias && !op.maskC.on &&
                        (op.beta == 0.0f || op.beta == 1.0f);
  const int64_t target = 2 * static_cast<int64_t>(multiprocessorCount());
  if (canSplit && tiles < target) {
    const int64_t wanted = std::min(ceilDiv(target, tiles), std::max<int64_t>(1, op.k / (8 * kSimtBK)));
    if (wanted > 1) {
      p.kChunk = ceilDiv(ceilDiv(op.k, wanted), kSimtBK) * kSimtBK;
      p.splits = static_cast<int>(ceilDiv(op.k, p.kChunk));
    }
  }
  if (p.splits > 1 && op.beta == 0.0f) zeroDevice(op.c, static_cast<size_t>(op.m * op.n) * sizeof(TC));

  // grid.z holds batch items x splits; batches beyond its limit go in several launches.
  const int64_t itemsPerLaunch = std::max<int64_t>(1, kMaxGridZ / p.splits);
  for (int64_t first = 0; first < op.batch; first += itemsPerLaunch) {
    const int64_t items = std::min(itemsPerLaunch, op.batch - first);
    p.a = devicePtr(op.a) + first * op.strideA;
    p.b = devicePtr(op.b) + first * op.strideB;
    p.c = devicePtr(op.c) + first * op.strideC;
    const dim3 grid(static_cast<unsigned>(tiles), 1, static_cast<unsigned>(items * p.splits));
    gemmSimtKernel<BM, BN, TM, TN><<<grid, kThreads, 0, stream()>>>(p);
    checkLaunch("gemmSimtKernel");
  }
}

// ---------------------------------------------------------------------------------------------
// WMMA kernel (bf16 operands, float32 accumulation). Block: 256 threads = 8 warps on a 128 x 128
// output tile, K in steps of 32 through shared memory (row-major bf16 tiles, rows padded by 8
// elements: 16-byte multiples, as WMMA's leading dimensions must be, that stagger the banks).
// Warp w owns the 64 x 32 sub-tile at rows (w / 4)·64, cols (w % 4)·32: 4 x 2 fragments of 16 x 16.
// Epilogue: each warp stages one fragment at a time in shared memory and writes it out with
// bounds checks, alpha and beta.

template <typename TC>
struct WmmaParams {
  const __nv_bfloat16* a;
  const __nv_bfloat16* b;
  DeviceType<TC>* c;
  int64_t m, n, k, strideA, strideB, strideC;
  OperandView viewA, viewB;
  float alpha, beta;
  int64_t tilesM;
};

constexpr int kWmmaBM = 128, kWmmaBN = 128, kWmmaBK = 32;

template <typename TC>
__global__ void __launch_bounds__(kThreads, 2) gemmWmmaKernel(const WmmaParams<TC> p) {
  namespace wmma = nvcuda::wmma;
  using DC = DeviceType<TC>;
  constexpr int BM = kWmmaBM, BN = kWmmaBN, BK = kWmmaBK, LDA = BK + 8, LDB = BN + 8;
  constexpr int kWarps = kThreads / 32;
  // WMMA needs 32-byte aligned fragment pointers: every fragment starts at a multiple of 16 rows
  // and 16 columns, i.e. of 16·LDA·2 = 1280, 16·LDB·2 = 4352 and 32 bytes.
  __shared__ __align__(128) __nv_bfloat16 As[BM * LDA];
  __shared__ __align__(128) __nv_bfloat16 Bs[BK * LDB];
  __shared__ __align__(128) float stage[kWarps][16 * 16];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = warp / 4, wn = warp % 4;
  const int64_t m0 = (blockIdx.x % p.tilesM) * BM, n0 = (blockIdx.x / p.tilesM) * BN;
  const __nv_bfloat16* a = p.a + blockIdx.z * p.strideA;
  const __nv_bfloat16* b = p.b + blockIdx.z * p.strideB;
  DC* c = p.c + blockIdx.z * p.strideC;
  const DropoutMask noMask{};

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[4][2];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
  }
  for (int64_t k0 = 0; k0 < p.k; k0 += BK) {
    loadTile<BM, BK>(a, p.viewA, p.m, p.k, m0, k0, noMask, As, LDA, 1);
    loadTile<BK, BN>(b, p.viewB, p.k, p.n, k0, n0, noMask, Bs, LDB, 1);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> af[4];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> bf[2];
#pragma unroll
      for (int i = 0; i < 4; ++i) wmma::load_matrix_sync(af[i], As + (wm * 64 + i * 16) * LDA + kk, LDA);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(bf[j], Bs + kk * LDB + wn * 32 + j * 16, LDB);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], af[i], bf[j], acc[i][j]);
      }
    }
    __syncthreads();
  }

  float* st = stage[warp];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(st, acc[i][j], 16, wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < 16 * 16; e += 32) {
        const int64_t row = m0 + wm * 64 + i * 16 + e / 16, col = n0 + wn * 32 + j * 16 + e % 16;
        if (row < p.m && col < p.n) {
          const int64_t off = row * p.n + col;
          float v = p.alpha * st[e];
          if (p.beta != 0.0f) v += p.beta * toFloat(c[off]);
          c[off] = fromFloat<DC>(v);
        }
      }
      __syncwarp();  // the next fragment overwrites the stage
    }
  }
}

template <typename TC>
void launchWmma(const GemmOp<bf16, bf16, TC>& op) {
  WmmaParams<TC> p{};
  p.m = op.m, p.n = op.n, p.k = op.k;
  p.strideA = op.strideA, p.strideB = op.strideB, p.strideC = op.strideC;
  p.viewA = vectorView(operandView(op.transA, op.m, op.k), devicePtr(op.a), op.m, op.k,
                       op.batch > 1 ? op.strideA : 0);
  p.viewB = vectorView(operandView(op.transB, op.k, op.n), devicePtr(op.b), op.k, op.n,
                       op.batch > 1 ? op.strideB : 0);
  p.alpha = op.alpha, p.beta = op.beta;
  p.tilesM = ceilDiv(op.m, kWmmaBM);
  const int64_t tiles = p.tilesM * ceilDiv(op.n, kWmmaBN);
  if (tiles > 0x7fffffff) {
    throw CudaError("gemm: output too large for one launch (" + std::to_string(tiles) + " tiles)");
  }
  for (int64_t first = 0; first < op.batch; first += kMaxGridZ) {
    const int64_t items = std::min(kMaxGridZ, op.batch - first);
    p.a = devicePtr(op.a) + first * op.strideA;
    p.b = devicePtr(op.b) + first * op.strideB;
    p.c = devicePtr(op.c) + first * op.strideC;
    const dim3 grid(static_cast<unsigned>(tiles), 1, static_cast<unsigned>(items));
    gemmWmmaKernel<TC><<<grid, kThreads, 0, stream()>>>(p);
    checkLaunch("gemmWmmaKernel");
  }
}

}  // namespace

template <typename TA, typename TB, typename TC>
void gemmTiled(const GemmOp<TA, TB, TC>& op) {
  if (op.batch <= 0 || op.m <= 0 || op.n <= 0) return;
  if (op.n <= 32 && op.m > op.n) launchSimt<128, 16, 4, 2>(op);
  else if (op.m <= 32 && op.n > op.m) launchSimt<16, 128, 2, 4>(op);
  else launchSimt<64, 64, 4, 4>(op);
}

template <typename T, typename TC>
void gemmFallback(const GemmOp<T, T, TC>& op) {
  if constexpr (std::is_same_v<T, bf16>) {
    if (op.batch <= 0 || op.m <= 0 || op.n <= 0) return;
    launchWmma(op);
  } else {
    gemmTiled(op);
  }
}

// The plain products (matmul's fallback) and LoRA's mixed ones: x (T) with the float32 adapters.
template void gemmTiled<float, float, float>(const GemmOp<float, float, float>&);
template void gemmTiled<bf16, float, float>(const GemmOp<bf16, float, float>&);
template void gemmTiled<float, bf16, float>(const GemmOp<float, bf16, float>&);
template void gemmTiled<float, float, bf16>(const GemmOp<float, float, bf16>&);

template void gemmFallback<float, float>(const GemmOp<float, float, float>&);
template void gemmFallback<bf16, bf16>(const GemmOp<bf16, bf16, bf16>&);
template void gemmFallback<bf16, float>(const GemmOp<bf16, bf16, float>&);

}  // namespace rlhf::cuda
