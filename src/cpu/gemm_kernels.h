// Internals of the CPU sgemm (gemm.h): the packed-panel format, the micro-kernel sets (portable
// C++ and AVX2/FMA) and the blocked driver parameterised by a kernel set, so the native tests can
// check every set on any machine. Kernels other than sgemm call sgemm, not these.
#pragma once

#include <cstdint>

namespace rlhf::cpu::gemm {

// Register tile: the micro-kernel computes an MR x NR block of C (6 x 16: twelve 8-float AVX2
// accumulators, two B vectors and one broadcast A value fill 15 of the 16 ymm registers).
constexpr int64_t kMR = 6;
constexpr int64_t kNR = 16;

// Packed formats, for a K-block of kc steps:
//   A panel: MR rows of op(A), stored p-major: a[p * MR + r] = op(A)[i0 + r, p0 + p]; rows past M are 0.
//   B panel: NR columns of op(B), stored p-major: b[p * NR + j] = op(B)[p0 + p, j0 + j]; columns past N are 0.
struct KernelSet {
  const char* name;
  // C[0:MR, 0:NR] (row stride ldc) = alpha · Apanel · Bpanel + beta · C; C is not read when beta == 0.
  void (*micro)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta);
  // Packs `rows` (<= MR) rows of op(A) starting at `a` (op(A)[i0, p0]), kc steps, into an A panel.
  void (*packA)(bool transA, const float* a, int64_t lda, int64_t rows, int64_t kc, float* dst);
  // Packs `cols` columns of op(B) starting at `b` (op(B)[p0, j0]), kc steps, into ceil(cols / NR)
  // consecutive B panels of kc * NR floats (64-byte aligned `dst`).
  void (*packB)(bool transB, const float* b, int64_t ldb, int64_t cols, int64_t kc, float* dst);
};

// Plain C++; correct on every CPU.
const KernelSet& portableKernels();
// AVX2 + FMA intrinsics; null when this build has no x86 code or the CPU lacks AVX2 or FMA.
const KernelSet* avx2Kernels();
// The fastest set this CPU supports (chosen once).
const KernelSet& bestKernels();

// sgemm (same contract as gemm.h) computed with the given kernel set.
void sgemmWith(const KernelSet& kernels, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

}  // namespace rlhf::cpu::gemm
