// Single-precision GEMM used by every CPU kernel that multiplies matrices (matmul, LoRA, log-prob
// gathering, attention). Row-major storage with explicit leading dimensions.
#pragma once

#include <cstdint>

namespace rlhf::cpu {

// C = alpha * op(A) · op(B) + beta * C, where op(A) is [M, K] and op(B) is [K, N]; C is [M, N].
//   transA == false: A is [M, K] with row stride lda;  true: A is [K, M] (lda), op(A) = Aᵀ.
//   transB == false: B is [K, N] with row stride ldb;  true: B is [N, K] (ldb), op(B) = Bᵀ.
// beta == 0 overwrites C (NaN/garbage in C is ignored). Threaded across the pool; runs on the
// calling thread alone when called from inside a parallel region.
void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// The micro-kernel set sgemm runs with on this CPU ("avx2" or "portable"), for diagnostics.
const char* sgemmKernelName();

}  // namespace rlhf::cpu
