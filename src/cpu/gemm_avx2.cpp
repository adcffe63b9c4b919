// The AVX2 + FMA kernel set of sgemm (see gemm_kernels.h). Only these functions carry the avx2/fma
// target attribute, so the rest of the addon still runs on any x86-64; bestKernels() picks this set
// at run time when the CPU supports it. Other architectures compile this file to a null stub.
#include "gemm_kernels.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#define RLHF_AVX2 __attribute__((target("avx2,fma")))

namespace rlhf::cpu::gemm {
namespace {

static_assert(kMR == 6 && kNR == 16, "the AVX2 micro-kernel is written for a 6 x 16 tile");

// One row of the C tile: c[0:16] = alpha · (x0, x1) + beta · c[0:16].
RLHF_AVX2 inline void storeRow(float* c, __m256 x0, __m256 x1, __m256 alpha, float beta) {
  if (beta == 0.0f) {
    x0 = _mm256_mul_ps(x0, alpha);
    x1 = _mm256_mul_ps(x1, alpha);
  } else if (beta == 1.0f) {
    x0 = _mm256_fmadd_ps(x0, alpha, _mm256_loadu_ps(c));
    x1 = _mm256_fmadd_ps(x1, alpha, _mm256_loadu_ps(c + 8));
  } else {
    const __m256 b = _mm256_set1_ps(beta);
    x0 = _mm256_fmadd_ps(x0, alpha, _mm256_mul_ps(b, _mm256_loadu_ps(c)));
    x1 = _mm256_fmadd_ps(x1, alpha, _mm256_mul_ps(b, _mm256_loadu_ps(c + 8)));
  }
  _mm256_storeu_ps(c, x0);
  _mm256_storeu_ps(c + 8, x1);
}

// 6 x 16 tile: per step, two aligned B loads, six A broadcasts, twelve FMAs.
RLHF_AVX2 void microAvx2(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                         float beta) {
  for (int r = 0; r < 6; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 15), _MM_HINT_T0);
  }
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_load_ps(b);
    const __m256 b1 = _mm256_load_ps(b + 8);
    __m256 x = _mm256_broadcast_ss(a);
    c00 = _mm256_fmadd_ps(x, b0, c00);
    c01 = _mm256_fmadd_ps(x, b1, c01);
    x = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(x, b0, c10);
    c11 = _mm256_fmadd_ps(x, b1, c11);
    x = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(x, b0, c20);
    c21 = _mm256_fmadd_ps(x, b1, c21);
    x = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(x, b0, c30);
    c31 = _mm256_fmadd_ps(x, b1, c31);
    x = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(x, b0, c40);
    c41 = _mm256_fmadd_ps(x, b1, c41);
    x = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(x, b0, c50);
    c51 = _mm256_fmadd_ps(x, b1, c51);
    a += 6;
    b += 16;
  }
  const __m256 va = _mm256_set1_ps(alpha);
  storeRow(c, c00, c01, va, beta);
  storeRow(c + ldc, c10, c11, va, beta);
  storeRow(c + 2 * ldc, c20, c21, va, beta);
  storeRow(c + 3 * ldc, c30, c31, va, beta);
  storeRow(c + 4 * ldc, c40, c41, va, beta);
  storeRow(c + 5 * ldc, c50, c51, va, beta);
}

// In-register transpose: on return r[q] holds lane q of every input row (r[q][i] = in[i][q]).
RLHF_AVX2 inline void transpose8x8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// A stored [M, K] (the usual activation layout) packs by transposing 6 x 8 blocks; the other
// layout and partial panels are plain copies, left to the portable packer.
RLHF_AVX2 void packAAvx2(bool transA, const float* a, int64_t lda, int64_t rows, int64_t kc, float* dst) {
  if (transA || rows != kMR) {
    portableKernels().packA(transA, a, lda, rows, kc, dst);
    return;
  }
  int64_t p = 0;
  for (; p + 8 <= kc; p += 8) {
    __m256 r[8];
    for (int i = 0; i < 6; ++i) r[i] = _mm256_loadu_ps(a + i * lda + p);
    r[6] = r[7] = _mm256_setzero_ps();
    transpose8x8(r);
    // Each 8-lane store spills two zeros into the next step's slot, which the next store rewrites;
    // the last one stores exactly six lanes so nothing past this block is touched.
    float* d = dst + p * kMR;
    for (int q = 0; q < 7; ++q) _mm256_storeu_ps(d + q * kMR, r[q]);
    _mm_storeu_ps(d + 7 * kMR, _mm256_castps256_ps128(r[7]));
    _mm_storel_pi(reinterpret_cast<__m64*>(d + 7 * kMR + 4), _mm256_extractf128_ps(r[7], 1));
  }
  for (; p < kc; ++p) {
    for (int i = 0; i < 6; ++i) dst[p * kMR + i] = a[i * lda + p];
  }
}

// Steps p..p+7 of columns 8h..8h+7 of a B panel, from B stored [N, K], by one 8 x 8 transpose.
RLHF_AVX2 inline void packBBlock(const float* b, int64_t ldb, int64_t p, int h, float* dst) {
  __m256 r[8];
  for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(b + (8 * h + j) * ldb + p);
  transpose8x8(r);
  for (int q = 0; q < 8; ++q) _mm256_store_ps(dst + (p + q) * kNR + 8 * h, r[q]);
}

// One full B panel (16 columns) from B stored [N, K] (weights used as x·Wᵀ), by 8 x 8 transposes:
// first 8 rows over all kc steps, then the other 8. With a power-of-two row stride all the rows
// fall in one L1 set; 8 rows fit its 8 ways, so each line survives until its second half is read
// (interleaving all 16 rows is twice as slow).
RLHF_AVX2 void packTransposedPanel(const float* b, int64_t ldb, int64_t kc, float* dst) {
  const int64_t full = kc / 8 * 8;
  for (int h = 0; h < 2; ++h) {
    for (int64_t p = 0; p < full; p += 8) packBBlock(b, ldb, p, h, dst);
  }
  for (int64_t p = full; p < kc; ++p) {
    for (int j = 0; j < 16; ++j) dst[p * kNR + j] = b[j * ldb + p];
  }
}

// B stored [K, N]: row copies. The slab of columns just past these (which the caller packs next
// for the same K-block) is prefetched row by row: kc short row pieces a page apart are not a
// pattern the hardware prefetchers follow, so without this each piece waits for memory.
RLHF_AVX2 void packRowsPanels(const float* b, int64_t ldb, int64_t cols, int64_t kc, float* dst) {
  const int64_t full = cols / kNR;
  for (int64_t p = 0; p < kc; ++p) {
    const float* src = b + p * ldb;
    for (int64_t q = 0; q < full; ++q) {
      float* d = dst + q * kc * kNR + p * kNR;
      _mm256_store_ps(d, _mm256_loadu_ps(src + q * kNR));
      _mm256_store_ps(d + 8, _mm256_loadu_ps(src + q * kNR + 8));
      _mm_prefetch(reinterpret_cast<const char*>(src + cols + q * kNR), _MM_HINT_T0);
    }
  }
  if (full * kNR < cols) {
    portableKernels().packB(false, b + full * kNR, ldb, cols - full * kNR, kc, dst + full * kc * kNR);
  }
}

// B stored [N, K] packs each full panel by transposes (a partial last one is left to the portable
// packer); B stored [K, N] by row copies.
RLHF_AVX2 void packBAvx2(bool transB, const float* b, int64_t ldb, int64_t cols, int64_t kc, float* dst) {
  if (!transB) {
    packRowsPanels(b, ldb, cols, kc, dst);
    return;
  }
  int64_t j = 0;
  for (; j + kNR <= cols; j += kNR, dst += kc * kNR) packTransposedPanel(b + j * ldb, ldb, kc, dst);
  if (j < cols) portableKernels().packB(transB, b + j * ldb, ldb, cols - j, kc, dst);
}

}  // namespace

const KernelSet* avx2Kernels() {
  static const KernelSet set{"avx2", microAvx2, packAAvx2, packBAvx2};
  static const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return supported ? &set : nullptr;
}

}  // namespace rlhf::cpu::gemm

#else

namespace rlhf::cpu::gemm {
const KernelSet* avx2Kernels() { return nullptr; }
}  // namespace rlhf::cpu::gemm

#endif
