// Rotary position embedding on the GPU (Hugging Face rotate_half convention), its inverse rotation
// and the inverse frequencies. Same formulas and float32 operation order as src/cpu/rope.cpp.
//
// Mapping: one block per (b, t) row of x [B·T, H, D]. The row's angles θ_j = float32(pos) ·
// invFreq[j] are shared by its H heads, so the block computes cos θ_j and sin θ_j (precise sincosf,
// times attentionScaling) once into shared memory, kTile pairs at a time, then its threads walk the
// (head, pack) items of the tile: a thread rotates the N pairs (x[j..j+N), x[j+D/2..j+D/2+N)) of
// one head with one N-element load and store on each half (16 bytes when D/2 and the pointers
// allow). Each pair is read and written by one thread only, so out may equal x.
#include <algorithm>
#include <vector>

#include "runtime.cuh"
#include "types.cuh"
#include "vec.cuh"

namespace rlhf::cuda {
namespace {

constexpr int64_t kTile = 512;  // pairs per tile: cos and sin take 4 KiB of shared memory
constexpr int64_t kMaxThreads = 256;

// Per pair (x1, x2) = (x[j], x[j + D/2]), with c, s the scaled cos and sin:
//   forward  (R):  y1 = c·x1 − s·x2,  y2 = c·x2 + s·x1
//   backward (Rᵀ): y1 = c·x1 + s·x2,  y2 = c·x2 − s·x1
// x, out [rows, heads, headDim] (out may be x); positions [rows]; invFreq [headDim / 2].
// The _rn intrinsics keep each product and sum separately rounded, as on the CPU (no FMA).
template <bool kTranspose, typename D, int N>
__global__ void ropeKernel(const D* x, D* out, const int32_t* positions, const float* invFreq, int64_t heads,
                           int64_t headDim, float scaling) {
  __shared__ float cosTile[kTile], sinTile[kTile];
  const int64_t row = blockIdx.x;
  const int64_t half = headDim / 2;
  const float pos = static_cast<float>(positions[row]);
  const D* xr = x + row * heads * headDim;
  D* yr = out + row * heads * headDim;
  for (int64_t tile = 0; tile < half; tile += kTile) {
    const int64_t pairs = half - tile < kTile ? half - tile : kTile;
    if (tile > 0) __syncthreads();  // every thread is done with the previous tile's cos/sin
    for (int64_t j = threadIdx.x; j < pairs; j += blockDim.x) {
      const float angle = pos * invFreq[tile + j];
      float s, c;
      sincosf(angle, &s, &c);
      cosTile[j] = c * scaling;
      sinTile[j] = s * scaling;
    }
    __syncthreads();
    // Items (h, p): head h, packs p of the tile; 32-bit arithmetic (heads · kTile / N is small).
    const unsigned packs = static_cast<unsigned>(pairs / N);
    const unsigned items = static_cast<unsigned>(heads) * packs;
    for (unsigned i = threadIdx.x; i < items; i += blockDim.x) {
      const unsigned h = i / packs, jt = (i - h * packs) * N;
      const int64_t offset = h * headDim + tile + jt;
      const Pack<D, N> a = loadPack<N>(xr + offset), b = loadPack<N>(xr + offset + half);
      Pack<D, N> ya, yb;
#pragma unroll
      for (int k = 0; k < N; ++k) {
        const float x1 = toFloat(a.v[k]), x2 = toFloat(b.v[k]);
        const float c = cosTile[jt + k], s = sinTile[jt + k];
        if (kTranspose) {
          ya.v[k] = fromFloat<D>(__fadd_rn(__fmul_rn(c, x1), __fmul_rn(s, x2)));
          yb.v[k] = fromFloat<D>(__fsub_rn(__fmul_rn(c, x2), __fmul_rn(s, x1)));
        } else {
          ya.v[k] = fromFloat<D>(__fsub_rn(__fmul_rn(c, x1), __fmul_rn(s, x2)));
          yb.v[k] = fromFloat<D>(__fadd_rn(__fmul_rn(c, x2), __fmul_rn(s, x1)));
        }
      }
      storePack<N>(yr + offset, ya);
      storePack<N>(yr + offset + half, yb);
    }
  }
}

template <bool kTranspose, typename D, int N>
void launchRope(const D* x, D* out, const int32_t* positions, const float* invFreq, int64_t rows, int64_t heads,
                int64_t headDim, float scaling) {
  // Enough threads for one tile's items (whole warps), at most kMaxThreads.
  const int64_t items = heads * (std::min(kTile, headDim / 2) / N);
  const unsigned threads = static_cast<unsigned>(std::clamp<int64_t>((items + 31) / 32 * 32, 32, kMaxThreads));
  ropeKernel<kTranspose, D, N><<<static_cast<unsigned>(rows), threads, 0, stream()>>>(x, out, positions, invFreq,
                                                                                       heads, headDim, scaling);
  checkLaunch("ropeKernel");
}

template <bool kTranspose, typename T>
void rotate(const T* x, T* out, const int32_t* positions, const float* invFreq, int64_t batch, int64_t seq,
            int64_t heads, int64_t headDim, float scaling) {
  const int64_t rows = batch * seq;
  if (rows == 0 || heads == 0 || headDim == 0) return;
  using D = DeviceType<T>;
  constexpr int kPack = kPack16<D>;
  const D* dx = devicePtr(x);
  D* dout = devicePtr(out);
  if ((headDim / 2) % kPack == 0 && allAligned(16, {dx, dout})) {
    launchRope<kTranspose, D, kPack>(dx, dout, positions, invFreq, rows, heads, headDim, scaling);
  } else {
    launchRope<kTranspose, D, 1>(dx, dout, positions, invFreq, rows, heads, headDim, scaling);
  }
}

}  // namespace

void ropeFrequencies(const RopeFrequencyArgs& p) {
  // A few hundred floats, once per model: computed by the CPU code itself (so both backends hold
  // the same bits) and uploaded.
  std::vector<float> host(static_cast<size_t>(p.headDim / 2));
  RopeFrequencyArgs onHost = p;
  onHost.invFreq = host.data();
  cpu::ropeFrequencies(onHost);
  copyToDevice(p.invFreq, host.data(), host.size() * sizeof(float));
}

template <typename T>
void rope(const RopeArgsT<T>& p) {
  rotate<false>(p.x, p.out, p.positions, p.invFreq, p.batch, p.seq, p.heads, p.headDim, p.attentionScaling);
}

template <typename T>
void ropeBackward(const RopeBackwardArgsT<T>& p) {
  rotate<true>(p.dOut, p.dX, p.positions, p.invFreq, p.batch, p.seq, p.heads, p.headDim, p.attentionScaling);
}

template void rope<float>(const RopeArgsT<float>&);
template void rope<bf16>(const RopeArgsT<bf16>&);
template void ropeBackward<float>(const RopeBackwardArgsT<float>&);
template void ropeBackward<bf16>(const RopeBackwardArgsT<bf16>&);

}  // namespace rlhf::cuda
