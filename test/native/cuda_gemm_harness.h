// Helpers for the parity tests of the GEMM-based CUDA ops (matmul, LoRA): running a test body on
// each GEMM backend, and tolerances for products, whose rounding error scales with the magnitude
// of the summed terms rather than with the (possibly cancelled) result.
#pragma once

#ifdef RLHF_WITH_CUDA

#include <cmath>
#include <string>
#include <vector>

#include "cuda_harness.h"

namespace rlhf::test {

enum class GemmPath { CublasLt, Fallback };

inline const char* gemmPathName(GemmPath path) { return path == GemmPath::CublasLt ? "cuBLASLt" : "fallback"; }

// Selects a GEMM backend for the life of the object, then restores the previous choice. Skips the
// calling test when it asks for cuBLASLt and cuBLASLt did not load (with the loader's reason).
class UseGemmPath {
 public:
  explicit UseGemmPath(GemmPath path) : previous_(cuda::gemmFallbackForced()) {
    cuda::forceGemmFallback(path == GemmPath::Fallback);
    if (path == GemmPath::CublasLt && !cuda::gemmUsesCublasLt()) {
      cuda::forceGemmFallback(previous_);
      SKIP("cuBLASLt is not in use: " + cuda::gemmBackendDescription());
    }
  }
  ~UseGemmPath() { cuda::forceGemmFallback(previous_); }
  UseGemmPath(const UseGemmPath&) = delete;
  UseGemmPath& operator=(const UseGemmPath&) = delete;

 private:
  bool previous_;
};

inline double rootMeanSquare(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += static_cast<double>(x) * x;
  return v.empty() ? 0.0 : std::sqrt(s / static_cast<double>(v.size()));
}

// Parity of a product: |got − want| ≤ tol · (|want| + rms(want)). The rms term covers elements
// that cancel to near zero, whose error is set by the size of the summed terms; the GPU sums in a
// different order (tiles, split-K, cuBLASLt's kernels) than the CPU's packed sgemm.
inline void checkProductParity(const char* file, int line, const std::string& label, const std::vector<float>& got,
                               const std::vector<float>& want, double tol) {
  checkParity(file, line, label, got, want, tol, tol * rootMeanSquare(want));
}

// Tolerances by output type: float32 outputs of float32 math; float32 outputs of bf16 products
// (tensor-core accumulation is float32 but not necessarily rounded like sequential float32 adds);
// bf16 outputs (one or two roundings to 8 bits of mantissa).
constexpr double kFloatTol = 1e-5;
constexpr double kBf16ProductTol = 1e-3;
constexpr double kBf16Tol = 1e-2;

}  // namespace rlhf::test

#define CHECK_PRODUCT(label, got, want, tol) ::rlhf::test::checkProductParity(__FILE__, __LINE__, label, got, want, tol)

#endif  // RLHF_WITH_CUDA
