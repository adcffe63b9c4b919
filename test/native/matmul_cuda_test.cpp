// matmul and matmulBackward on the GPU against the CPU kernels, on both GEMM backends (cuBLASLt,
// skipped with the loader's reason when it did not load, and the handwritten fallback), for every
// type combination, every transpose, odd shapes (sizes off every tile size, 1x1x1, K = 0), the
// skinny and split-K shapes of the fallback, batches with broadcast operands, alpha and beta. Host
// tests (no GPU needed): the cuBLASLt loader's search order and report, and the row-major to
// column-major mapping of the cuBLASLt calls, checked by emulating cuBLAS's column-major product.
#ifdef RLHF_WITH_CUDA

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <type_traits>
#include <vector>

#include "../../cuda/cublaslt.h"
#include "../../src/kernels.h"
#include "cuda_gemm_harness.h"
#include "harness.h"

namespace {

namespace fs = std::filesystem;
using namespace rlhf;
using test::GemmPath;

// A fresh directory under the system's temporary directory, removed with the object.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "rlhf-cublaslt-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace

TEST(cublaslt_loader_tries_every_candidate_in_order_and_reports_each_failure) {
  TempDir tmp;
  const std::string root = tmp.path();
  // Python prefixes with a site-packages directory (a virtualenv) and a dist-packages one (a system
  // prefix); HOME has none, so it contributes nothing.
  fs::create_directories(root + "/venv/lib/python3.12/site-packages");
  fs::create_directories(root + "/usr/lib/python3.11/dist-packages");
  fs::create_directories(root + "/home");
  // A candidate that exists but is no shared library.
  fs::create_directories(root + "/venv/lib/python3.12/site-packages/nvidia/cublas/lib");
  std::ofstream(root + "/venv/lib/python3.12/site-packages/nvidia/cublas/lib/libcublasLt.so.12") << "not an ELF file";

  cuda::lt::SearchEnv env;
  env.explicitPath = root + "/explicit/libcublasLt.so";
  env.cudaHome = root + "/cuda-home";
  env.virtualEnv = root + "/venv";
  env.home = root + "/home";
  env.systemCuda = root + "/system-cuda";
  env.systemPythonPrefixes = {root + "/usr"};
  const std::vector<std::string> expected = {
      root + "/explicit/libcublasLt.so",
      "libcublasLt.so.13",
      "libcublasLt.so.12",
      root + "/cuda-home/lib64/libcublasLt.so.13",
      root + "/cuda-home/lib64/libcublasLt.so.12",
      root + "/system-cuda/lib64/libcublasLt.so.13",
      root + "/system-cuda/lib64/libcublasLt.so.12",
      root + "/venv/lib/python3.12/site-packages/nvidia/cu13/lib/libcublasLt.so.13",
      root + "/venv/lib/python3.12/site-packages/nvidia/cublas/lib/libcublasLt.so.12",
      root + "/usr/lib/python3.11/dist-packages/nvidia/cu13/lib/libcublasLt.so.13",
      root + "/usr/lib/python3.11/dist-packages/nvidia/cublas/lib/libcublasLt.so.12",
  };
  const std::vector<std::string> candidates = cuda::lt::candidatePaths(env);
  CHECK(candidates == expected);

  // Every candidate but the bare sonames (which a machine with cuBLAS resolves), plus a library
  // that loads but is not cuBLASLt: nothing loads, and each attempt is reported in order.
  std::vector<std::string> tried;
  for (const std::string& c : candidates) {
    if (c.find('/') != std::string::npos) tried.push_back(c);
  }
  tried.insert(tried.begin() + 1, "libm.so.6");
  const cuda::lt::LoadResult result = cuda::lt::openFirst(tried);
  CHECK(result.library == nullptr);
  CHECK(result.failures.size() == tried.size());
  const std::string report = cuda::lt::describeFailures(result.failures);
  for (size_t i = 0; i < result.failures.size() && i < tried.size(); ++i) {
    CHECK(result.failures[i].path == tried[i]);
    CHECK(!result.failures[i].error.empty());
    CHECK(report.find("  " + tried[i] + ": ") != std::string::npos);
  }
  if (result.failures.size() == tried.size()) {
    CHECK(result.failures[1].error == "loaded, but it does not export cublasLtCreate");
    CHECK(result.failures[0].error.find("No such file") != std::string::npos);
  }
}

TEST(cublaslt_column_major_mapping_computes_the_row_major_product) {
  // cuBLAS semantics: D'[i + j·ld] = Σ_p op(A')(i, p) · op(B')(p, j), op(X)(i, j) = X[i + j·ld] (N)
  // or X[j + i·ld] (T). With A' = our B, B' = our A and D' = our C, D' must be C in memory.
  struct Shape {
    int64_t m, n, k;
  };
  for (const Shape& s : {Shape{7, 259, 3}, Shape{1, 1, 1}, Shape{5, 3, 8}, Shape{33, 17, 12}}) {
    for (bool transA : {false, true}) {
      for (bool transB : {false, true}) {
        const auto a = test::randomNormals(s.m * s.k, 11), b = test::randomNormals(s.k * s.n, 12);
        const cuda::lt::ColumnMajorGemm g = cuda::lt::columnMajorGemm(transA, transB, s.m, s.n, s.k);
        // Shapes as cuBLAS checks them: op(A') is [m', k'], op(B') [k', n'], D' [m', n'].
        const uint64_t mp = g.d.rows, np = g.d.cols;
        CHECK(mp == static_cast<uint64_t>(s.n) && np == static_cast<uint64_t>(s.m) && g.d.ld == s.n);
        CHECK((g.a.op == cuda::lt::kOpN ? g.a.rows : g.a.cols) == mp);
        CHECK((g.a.op == cuda::lt::kOpN ? g.a.cols : g.a.rows) == static_cast<uint64_t>(s.k));
        CHECK((g.b.op == cuda::lt::kOpN ? g.b.rows : g.b.cols) == static_cast<uint64_t>(s.k));
        CHECK((g.b.op == cuda::lt::kOpN ? g.b.cols : g.b.rows) == np);
        CHECK(g.a.ld >= static_cast<int64_t>(g.a.rows) && g.b.ld >= static_cast<int64_t>(g.b.rows));
        auto opAt = [](const cuda::lt::ColumnMajorMatrix& x, const std::vector<float>& v, uint64_t i, uint64_t j) {
          return static_cast<double>(x.op == cuda::lt::kOpN ? v[i + j * x.ld] : v[j + i * x.ld]);
        };
        std::vector<double> d(s.m * s.n), want(s.m * s.n);
        for (uint64_t i = 0; i < mp; ++i) {
          for (uint64_t j = 0; j < np; ++j) {
            double sum = 0;
            for (int64_t p = 0; p < s.k; ++p) sum += opAt(g.a, b, i, p) * opAt(g.b, a, p, j);
            d[i + j * g.d.ld] = sum;
          }
        }
        for (int64_t i = 0; i < s.m; ++i) {
          for (int64_t j = 0; j < s.n; ++j) {
            double sum = 0;
            for (int64_t p = 0; p < s.k; ++p) {
              sum += static_cast<double>(transA ? a[p * s.m + i] : a[i * s.k + p]) *
                     static_cast<double>(transB ? b[j * s.k + p] : b[p * s.n + j]);
            }
            want[i * s.n + j] = sum;
          }
        }
        CHECK(d == want);
      }
    }
  }
}

namespace {

template <typename T>
std::vector<float> stored(std::vector<float> v) {
  if constexpr (std::is_same_v<T, bf16>) return test::roundToBf16(v);
  return v;
}

template <typename T>
constexpr double toleranceFor() {
  return std::is_same_v<T, bf16> ? test::kBf16Tol : test::kFloatTol;
}

// Output tolerance for products of T operands into TC.
template <typename T, typename TC>
constexpr double productTolerance() {
  if constexpr (std::is_same_v<TC, bf16>) return test::kBf16Tol;
  if constexpr (std::is_same_v<T, bf16>) return test::kBf16ProductTol;
  return test::kFloatTol;
}

struct Case {
  const char* name;
  int64_t batch, m, n, k;
  bool aBatched, bBatched;
  float alpha, beta;
};

// Tile edges (64, 128), the skinny tiles (N or M ≤ 32) and their split-K (long K), batches with
// either operand broadcast, alpha and beta, K = 0, and one realistic size.
const Case kForwardCases[] = {
    {"7x259x3", 1, 7, 259, 3, false, false, 1.0f, 0.0f},
    {"1x1x1", 1, 1, 1, 1, false, false, 1.0f, 0.0f},
    {"65x130x33 alpha", 1, 65, 130, 33, false, false, 1.5f, 0.0f},
    {"129x127x40 beta", 1, 129, 127, 40, false, false, -0.5f, 0.25f},
    {"skinny N, split K", 1, 100, 8, 2000, false, false, 1.0f, 0.0f},
    {"skinny N, split K, accumulate", 1, 100, 24, 2000, false, false, 0.5f, 1.0f},
    {"skinny M, split K", 1, 8, 300, 700, false, false, 1.0f, 0.0f},
    {"batched", 3, 33, 17, 65, true, true, 1.0f, 0.0f},
    {"broadcast B, accumulate", 3, 20, 40, 24, true, false, 1.0f, 1.0f},
    {"broadcast A", 4, 20, 40, 24, false, true, 2.0f, 0.0f},
    {"K = 0, beta", 2, 5, 7, 0, true, true, 1.0f, 0.5f},
    {"K = 0", 2, 5, 7, 0, true, true, 1.0f, 0.0f},
    {"realistic 256x384x512", 1, 256, 384, 512, false, false, 1.0f, 0.0f},
};

template <typename T, typename TC>
void checkMatmul(const Case& c, bool transA, bool transB, uint32_t seed) {
  const int64_t aItem = c.m * c.k, bItem = c.k * c.n, cItem = c.m * c.n;
  const int64_t strideA = c.aBatched ? aItem : 0, strideB = c.bBatched ? bItem : 0;
  const auto a = stored<T>(test::randomNormals((c.aBatched ? c.batch : 1) * aItem, seed));
  const auto b = stored<T>(test::randomNormals((c.bBatched ? c.batch : 1) * bItem, seed + 1));
  const auto c0 = stored<TC>(test::randomNormals(c.batch * cItem, seed + 2));
  std::vector<float> want = c0;
  cpu::matmul({a.data(), b.data(), want.data(), c.batch, c.m, c.n, c.k, transA, transB, strideA, strideB, cItem,
               c.alpha, c.beta});
  test::DeviceArray<T> da(a), db(b);
  test::DeviceArray<TC> dc(c.batch * cItem);  // poisoned: beta = 0 must not read it
  if (c.beta != 0.0f) dc.upload(c0);
  cuda::matmul<T, TC>({da.data(), db.data(), dc.data(), c.batch, c.m, c.n, c.k, transA, transB, strideA, strideB,
                       cItem, c.alpha, c.beta});
  const std::string label = std::string(c.name) + (transA ? " transA" : "") + (transB ? " transB" : "");
  CHECK_PRODUCT(label, dc.download(), want, (productTolerance<T, TC>()));
}

template <typename T, typename TC>
void checkMatmulAll(GemmPath path) {
  test::requireCuda();
  test::UseGemmPath use(path);
  uint32_t seed = 100;
  for (const Case& c : kForwardCases) {
    for (bool transA : {false, true}) {
      for (bool transB : {false, true}) checkMatmul<T, TC>(c, transA, transB, seed += 3);
    }
  }
}

const Case kBackwardCases[] = {
    {"7x259x3", 1, 7, 259, 3, false, false, 1.0f, 0.0f},
    {"65x130x33", 1, 65, 130, 33, false, false, 1.0f, 0.0f},
    {"skinny, long M", 1, 700, 8, 12, false, false, 1.0f, 0.0f},
    {"batched", 3, 20, 40, 24, true, true, 1.0f, 0.0f},
    {"broadcast B (summed over the batch)", 3, 20, 40, 24, true, false, 1.0f, 0.0f},
    {"broadcast A (summed over the batch)", 3, 20, 40, 24, false, true, 1.0f, 0.0f},
    {"realistic 256x384x512", 1, 256, 384, 512, false, false, 1.0f, 0.0f},
};

template <typename T, typename TG>
void checkMatmulBackward(const Case& c, bool transA, bool transB, bool accumulate, uint32_t seed) {
  const int64_t aItem = c.m * c.k, bItem = c.k * c.n, cItem = c.m * c.n;
  const int64_t aCount = (c.aBatched ? c.batch : 1) * aItem, bCount = (c.bBatched ? c.batch : 1) * bItem;
  const int64_t strideA = c.aBatched ? aItem : 0, strideB = c.bBatched ? bItem : 0;
  const auto a = stored<T>(test::randomNormals(aCount, seed));
  const auto b = stored<T>(test::randomNormals(bCount, seed + 1));
  const auto dC = stored<T>(test::randomNormals(c.batch * cItem, seed + 2));
  const auto dA0 = stored<TG>(test::randomNormals(aCount, seed + 3));
  const auto dB0 = stored<TG>(test::randomNormals(bCount, seed + 4));
  std::vector<float> dAWant = dA0, dBWant = dB0;
  cpu::matmulBackward({a.data(), b.data(), dC.data(), dAWant.data(), dBWant.data(), c.batch, c.m, c.n, c.k, transA,
                       transB, strideA, strideB, cItem, accumulate});
  test::DeviceArray<T> da(a), db(b), ddC(dC);
  test::DeviceArray<TG> ddA(aCount), ddB(bCount);  // poisoned unless accumulating
  if (accumulate) {
    ddA.upload(dA0);
    ddB.upload(dB0);
  }
  cuda::matmulBackward<T, TG>({da.data(), db.data(), ddC.data(), ddA.data(), ddB.data(), c.batch, c.m, c.n, c.k,
                               transA, transB, strideA, strideB, cItem, accumulate});
  const std::string label = std::string(c.name) + (transA ? " transA" : "") + (transB ? " transB" : "") +
                            (accumulate ? " accumulate" : "");
  CHECK_PRODUCT(label + " dA", ddA.download(), dAWant, (productTolerance<T, TG>()));
  CHECK_PRODUCT(label + " dB", ddB.download(), dBWant, (productTolerance<T, TG>()));
}

template <typename T, typename TG>
void checkMatmulBackwardAll(GemmPath path) {
  test::requireCuda();
  test::UseGemmPath use(path);
  uint32_t seed = 500;
  for (const Case& c : kBackwardCases) {
    for (bool transA : {false, true}) {
      for (bool transB : {false, true}) {
        for (bool accumulate : {false, true}) checkMatmulBackward<T, TG>(c, transA, transB, accumulate, seed += 5);
      }
    }
  }
}

// matmulBackward with only dB wanted (dA null), as the binding calls it when dA and dB differ in type.
template <typename T>
void checkGradientOfBOnly() {
  const int64_t m = 40, n = 24, k = 56;
  const auto a = stored<T>(test::randomNormals(m * k, 900)), b = stored<T>(test::randomNormals(k * n, 901));
  const auto dC = stored<T>(test::randomNormals(m * n, 902));
  std::vector<float> dBWant(k * n);
  cpu::matmulBackward({a.data(), b.data(), dC.data(), nullptr, dBWant.data(), 1, m, n, k, false, false, 0, 0, m * n,
                       false});
  test::DeviceArray<T> da(a), db(b), ddC(dC), ddB(k * n);
  cuda::matmulBackward<T, T>({da.data(), db.data(), ddC.data(), nullptr, ddB.data(), 1, m, n, k, false, false, 0, 0,
                              m * n, false});
  CHECK_PRODUCT("dB only", ddB.download(), dBWant, toleranceFor<T>());
}

}  // namespace

TEST(matmul_cuda_cublaslt_float32) { checkMatmulAll<float, float>(GemmPath::CublasLt); }
TEST(matmul_cuda_cublaslt_bfloat16) { checkMatmulAll<bf16, bf16>(GemmPath::CublasLt); }
TEST(matmul_cuda_cublaslt_bfloat16_into_float32) { checkMatmulAll<bf16, float>(GemmPath::CublasLt); }
TEST(matmul_cuda_fallback_float32) { checkMatmulAll<float, float>(GemmPath::Fallback); }
TEST(matmul_cuda_fallback_bfloat16) { checkMatmulAll<bf16, bf16>(GemmPath::Fallback); }
TEST(matmul_cuda_fallback_bfloat16_into_float32) { checkMatmulAll<bf16, float>(GemmPath::Fallback); }

TEST(matmul_backward_cuda_cublaslt_float32) { checkMatmulBackwardAll<float, float>(GemmPath::CublasLt); }
TEST(matmul_backward_cuda_cublaslt_bfloat16) { checkMatmulBackwardAll<bf16, bf16>(GemmPath::CublasLt); }
TEST(matmul_backward_cuda_cublaslt_bfloat16_into_float32) { checkMatmulBackwardAll<bf16, float>(GemmPath::CublasLt); }
TEST(matmul_backward_cuda_fallback_float32) { checkMatmulBackwardAll<float, float>(GemmPath::Fallback); }
TEST(matmul_backward_cuda_fallback_bfloat16) { checkMatmulBackwardAll<bf16, bf16>(GemmPath::Fallback); }
TEST(matmul_backward_cuda_fallback_bfloat16_into_float32) { checkMatmulBackwardAll<bf16, float>(GemmPath::Fallback); }

TEST(matmul_backward_cuda_one_gradient_only) {
  test::requireCuda();
  for (GemmPath path : {GemmPath::CublasLt, GemmPath::Fallback}) {
    try {
      test::UseGemmPath use(path);
      checkGradientOfBOnly<float>();
      checkGradientOfBOnly<bf16>();
    } catch (const test::Skipped& s) {
      std::printf("    (%s path skipped: %s)\n", test::gemmPathName(path), s.reason.c_str());
    }
  }
}

TEST(gemm_backend_description_names_the_backend) {
  // Needs no GPU: loading (or failing to load) cuBLASLt is host work.
  const std::string d = cuda::gemmBackendDescription();
  CHECK(!d.empty());
  CHECK(d.find("cuBLASLt") != std::string::npos);  // what loaded, or that none did and why
}

#endif  // RLHF_WITH_CUDA
