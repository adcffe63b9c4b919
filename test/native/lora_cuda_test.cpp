// LoRA forward and backward on the GPU against the CPU kernels (src/cpu/lora.cpp), float32 and
// bfloat16, on both GEMM backends: rank 0 (the plain linear layer, with and without bias), rank 1
// and 3 at odd sizes, rank 16 at a realistic size; dropout 0, 0.1 and 0.25 (the mask must be the
// CPU's element for element, or xa, dA and dX would differ far beyond the tolerances); every output
// and gradient (y, xa, dX overwritten and accumulated, dA, dB, dWeight, dBias accumulated into
// nonzero values).
#ifdef RLHF_WITH_CUDA

#include <string>
#include <type_traits>
#include <vector>

#include "../../src/kernels.h"
#include "cuda_gemm_harness.h"
#include "harness.h"

namespace {

using namespace rlhf;
using test::GemmPath;

struct LoraCase {
  const char* name;
  int64_t m, k, n, rank;
  bool bias;
  float dropout;
  bool accumulateDx;
  bool trainBase;  // dWeight (and dBias with a bias) wanted
};

const LoraCase kCases[] = {
    {"rank 0, bias, trained base", 5, 7, 9, 0, true, 0.0f, false, true},
    {"rank 0, 3x259x33, accumulate dX", 3, 259, 33, 0, false, 0.0f, true, false},
    {"rank 1, one token", 1, 16, 8, 1, false, 0.0f, false, false},
    {"rank 3, bias, 7x259x33", 7, 259, 33, 3, true, 0.0f, false, true},
    {"rank 3, dropout 0.25, 7x259x33", 7, 259, 33, 3, false, 0.25f, false, false},
    {"rank 3, dropout 0.25, bias, accumulate dX, 37x130x65", 37, 130, 65, 3, true, 0.25f, true, true},
    {"rank 16, bias, accumulate dX, 300x200x96", 300, 200, 96, 16, true, 0.0f, true, true},
    {"rank 16, dropout 0.1, 256x512x384", 256, 512, 384, 16, false, 0.1f, false, false},
};

template <typename T>
std::vector<float> stored(std::vector<float> v) {
  if constexpr (std::is_same_v<T, bf16>) return test::roundToBf16(v);
  return v;
}

template <typename T>
void checkLora(const LoraCase& c, uint32_t seed) {
  constexpr bool kBf16 = std::is_same_v<T, bf16>;
  // T outputs (y, dX); float32 outputs of float32 math (xa, dA, dB, dBias: the adapters and sums are
  // float32 whatever T is); dWeight, a product of T operands.
  const double tolT = kBf16 ? test::kBf16Tol : test::kFloatTol;
  const double tolF = test::kFloatTol;
  const double tolW = kBf16 ? test::kBf16ProductTol : test::kFloatTol;
  const int64_t m = c.m, k = c.k, n = c.n, r = c.rank;
  const float scale = 0.75f;
  const uint64_t dropSeed = 12345 + seed;
  const auto x = stored<T>(test::randomNormals(m * k, seed));
  const auto w = stored<T>(test::randomNormals(n * k, seed + 1, 0.2f));
  const auto bias = stored<T>(test::randomNormals(n, seed + 2));
  const auto a = test::randomNormals(r * k, seed + 3, 0.2f);
  const auto b = test::randomNormals(n * r, seed + 4);
  const auto dY = stored<T>(test::randomNormals(m * n, seed + 5));
  const auto dX0 = stored<T>(test::randomNormals(m * k, seed + 6));
  const auto dA0 = test::randomNormals(r * k, seed + 7), dB0 = test::randomNormals(n * r, seed + 8);
  const auto dW0 = test::randomNormals(n * k, seed + 9), dBias0 = test::randomNormals(n, seed + 10);
  const bool adapters = r > 0, wantBias = c.bias && c.trainBase;
  auto orNull = [](bool keep, auto* p) { return keep ? p : nullptr; };

  // CPU reference.
  std::vector<float> y(m * n), xa(m * r);
  cpu::lora({x.data(), w.data(), orNull(c.bias, bias.data()), orNull(adapters, a.data()), orNull(adapters, b.data()),
             y.data(), orNull(adapters, xa.data()), m, k, n, r, scale, c.dropout, dropSeed});
  std::vector<float> dX = dX0, dA = dA0, dB = dB0, dW = dW0, dBias = dBias0;
  cpu::loraBackward({dY.data(), x.data(), w.data(), orNull(adapters, a.data()), orNull(adapters, b.data()),
                     orNull(adapters, xa.data()), dX.data(), orNull(adapters, dA.data()), orNull(adapters, dB.data()),
                     orNull(c.trainBase, dW.data()), orNull(wantBias, dBias.data()), m, k, n, r, scale, c.dropout,
                     dropSeed, c.accumulateDx});

  // GPU. Outputs start as NaN; accumulated ones as the same values the CPU started from.
  test::DeviceArray<T> gx(x), gw(w), gbias(bias), gdY(dY), gy(m * n), gdX(m * k);
  test::DeviceArray<float> ga(a), gb(b), gxa(m * r), gdA(dA0), gdB(dB0), gdW(dW0), gdBias(dBias0);
  if (c.accumulateDx) gdX.upload(dX0);
  cuda::lora<T>({gx.data(), gw.data(), orNull(c.bias, gbias.data()), orNull(adapters, ga.data()),
                 orNull(adapters, gb.data()), gy.data(), orNull(adapters, gxa.data()), m, k, n, r, scale, c.dropout,
                 dropSeed});
  cuda::loraBackward<T>({gdY.data(), gx.data(), gw.data(), orNull(adapters, ga.data()), orNull(adapters, gb.data()),
                         orNull(adapters, gxa.data()), gdX.data(), orNull(adapters, gdA.data()),
                         orNull(adapters, gdB.data()), orNull(c.trainBase, gdW.data()),
                         orNull(wantBias, gdBias.data()), m, k, n, r, scale, c.dropout, dropSeed, c.accumulateDx});

  const std::string name = c.name;
  CHECK_PRODUCT(name + ": y", gy.download(), y, tolT);
  CHECK_PRODUCT(name + ": dX", gdX.download(), dX, tolT);
  if (adapters) {
    CHECK_PRODUCT(name + ": xa", gxa.download(), xa, tolF);
    CHECK_PRODUCT(name + ": dA", gdA.download(), dA, tolF);
    CHECK_PRODUCT(name + ": dB", gdB.download(), dB, tolF);
  }
  // Gradients not asked for must be left alone.
  CHECK_PRODUCT(name + ": dWeight", gdW.download(), c.trainBase ? dW : dW0, tolW);
  CHECK_PRODUCT(name + ": dBias", gdBias.download(), wantBias ? dBias : dBias0, tolF);
}

template <typename T>
void checkLoraAll(GemmPath path) {
  test::requireCuda();
  test::UseGemmPath use(path);
  uint32_t seed = 40;
  for (const LoraCase& c : kCases) checkLora<T>(c, seed += 11);
}

// Without dX wanted (a first layer): the adapter gradients must not depend on it.
template <typename T>
void checkNoDx() {
  const int64_t m = 33, k = 40, n = 24, r = 4;
  const float scale = 2.0f, dropout = 0.25f;
  const auto x = stored<T>(test::randomNormals(m * k, 70)), w = stored<T>(test::randomNormals(n * k, 71));
  const auto a = test::randomNormals(r * k, 72), b = test::randomNormals(n * r, 73);
  const auto dY = stored<T>(test::randomNormals(m * n, 74));
  std::vector<float> y(m * n), xa(m * r), dA(r * k), dB(n * r);
  cpu::lora({x.data(), w.data(), nullptr, a.data(), b.data(), y.data(), xa.data(), m, k, n, r, scale, dropout, 9});
  cpu::loraBackward({dY.data(), x.data(), w.data(), a.data(), b.data(), xa.data(), nullptr, dA.data(), dB.data(),
                     nullptr, nullptr, m, k, n, r, scale, dropout, 9, false});
  test::DeviceArray<T> gx(x), gw(w), gdY(dY), gy(m * n);
  test::DeviceArray<float> ga(a), gb(b), gxa(m * r), gdA(std::vector<float>(r * k, 0.0f)),
      gdB(std::vector<float>(n * r, 0.0f));
  cuda::lora<T>({gx.data(), gw.data(), nullptr, ga.data(), gb.data(), gy.data(), gxa.data(), m, k, n, r, scale,
                 dropout, 9});
  cuda::loraBackward<T>({gdY.data(), gx.data(), gw.data(), ga.data(), gb.data(), gxa.data(), nullptr, gdA.data(),
                         gdB.data(), nullptr, nullptr, m, k, n, r, scale, dropout, 9, false});
  CHECK_PRODUCT("no dX: dA", gdA.download(), dA, test::kFloatTol);
  CHECK_PRODUCT("no dX: dB", gdB.download(), dB, test::kFloatTol);
}

}  // namespace

TEST(lora_cuda_cublaslt_float32) { checkLoraAll<float>(GemmPath::CublasLt); }
TEST(lora_cuda_cublaslt_bfloat16) { checkLoraAll<bf16>(GemmPath::CublasLt); }
TEST(lora_cuda_fallback_float32) { checkLoraAll<float>(GemmPath::Fallback); }
TEST(lora_cuda_fallback_bfloat16) { checkLoraAll<bf16>(GemmPath::Fallback); }

TEST(lora_backward_cuda_without_dx) {
  test::requireCuda();
  checkNoDx<float>();
  checkNoDx<bf16>();
}

#endif  // RLHF_WITH_CUDA
