// The GEMM layer under cuda::matmul and cuda::lora.
//
//   gemm<T, TC>          plain products (both operands T): cuBLASLt when it loaded and no fallback
//                        is forced (matmul.cu), else gemmFallback.
//   gemmFallback<T, TC>  the handwritten plain product (gemm_tiled.cu): WMMA tensor cores for bf16
//                        operands, the SIMT kernel of gemmTiled for float32 ones.
//   gemmTiled<TA, TB, TC>  the handwritten SIMT kernel (gemm_tiled.cu): any shape, transposes, strided
//                        or broadcast batches, float32 accumulation, operands of different types (LoRA
//                        multiplies bf16 activations by float32 adapters), and the fused extras LoRA
//                        needs: a bias row, and the dropout mask of src/cpu/dropout_mask.h applied to an
//                        operand as it is loaded or to the product as it is stored.
//
// Semantics (row-major, as src/kernels.h §1): for b in [0, batch)
//   C[b] = mask_C(alpha · op(mask_A(A[b])) · op(mask_B(B[b]))) + bias + beta · C[b]
// with op(A) [M, K], op(B) [K, N], C [M, N] contiguous; beta = 0 never reads C. A mask keys each
// element by its offset in its stored matrix (row · ld + col), which for LoRA's x [M, K] is the
// dropout index i·K + j of the CPU reference.
#pragma once

#include <cstdint>

#include "../src/cpu/dropout_mask.h"
#include "types.cuh"

namespace rlhf::cuda {

// LoRA's dropout as a mask: keep(offset) ? v / (1 − p) : 0. Off when p == 0.
struct DropoutMask {
  bool on = false;
  uint64_t seedKey = 0;
  uint32_t threshold = 0;
  float invKeep = 1.0f;

  static DropoutMask make(float dropout, uint64_t seed) {
    DropoutMask m;
    if (dropout > 0.0f) {
      m.on = true;
      m.seedKey = dropoutSeedKey(seed);
      m.threshold = dropoutThreshold(dropout);
      m.invKeep = 1.0f / (1.0f - dropout);
    }
    return m;
  }
  __device__ __forceinline__ float apply(float v, int64_t offset) const {
    return dropoutKeep(seedKey, static_cast<uint64_t>(offset), threshold) ? v * invKeep : 0.0f;
  }
};

// Element types are the interface's (float, bf16); kernels read them as DeviceType<T>.
template <typename TA, typename TB, typename TC>
struct GemmOp {
  const TA* a;
  const TB* b;
  TC* c;
  int64_t batch, m, n, k;
  bool transA, transB;
  int64_t strideA, strideB, strideC;  // elements between batch items; 0 broadcasts an operand
  float alpha, beta;
  const TC* bias = nullptr;  // [N], added to every row (gemmTiled only)
  DropoutMask maskA{}, maskB{}, maskC{};  // gemmTiled only
};

template <typename TA, typename TB, typename TC>
void gemmTiled(const GemmOp<TA, TB, TC>& op);

template <typename T, typename TC>
void gemmFallback(const GemmOp<T, T, TC>& op);

template <typename T, typename TC>
void gemm(const GemmOp<T, T, TC>& op);

}  // namespace rlhf::cuda
