// cuBLASLt without cuBLAS at build time: the few types, enum values and entry points of the public
// cublasLt.h that cuda::matmul uses, declared here with the header's exact values and layouts, and a
// loader that finds libcublasLt with dlopen on first use (the build machines and CI have nvcc but no
// cuBLAS; GPU machines have the CUDA toolkit's or PyTorch's copy).
//
// Checked against the public headers of CUDA 12.6 (zspace/system.cuda-12.6: include/cublasLt.h and
// include/cublas_api.h) and of CUDA 13.0 (leomaxwell972/CU13ToolKit_Includes: include/cublas_api.h,
// CUBLAS_VER_MAJOR 13): cublasStatus_t, cublasOperation_t and cublasComputeType_t values; the
// cublasLtMatmulDescAttributes_t, cublasLtMatrixLayoutAttribute_t and
// cublasLtMatmulPreferenceAttributes_t values; cublasLtMatmulAlgo_t (uint64_t data[8]) and
// cublasLtMatmulHeuristicResult_t (algo, size_t workspaceSize, cublasStatus_t state, float
// wavesCount, int reserved[4]); the entry points' parameter lists. cudaDataType values are those of
// CUDA's library_types.h (CUDA_R_32F = 0, CUDA_R_16BF = 14). The descriptors are opaque pointers here.
//
// No CUDA header is needed: host code (the loader's tests) includes this file too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

struct CUstream_st;  // cudaStream_t is CUstream_st* (driver_types.h)

namespace rlhf::cuda::lt {

// cublas_api.h
enum Status : int {
  kStatusSuccess = 0,
  kStatusNotInitialized = 1,
  kStatusAllocFailed = 3,
  kStatusInvalidValue = 7,
  kStatusArchMismatch = 8,
  kStatusMappingError = 11,
  kStatusExecutionFailed = 13,
  kStatusInternalError = 14,
  kStatusNotSupported = 15,
  kStatusLicenseError = 16,
};
enum Operation : int32_t { kOpN = 0, kOpT = 1 };
enum ComputeType : int { kCompute32F = 68 };  // CUBLAS_COMPUTE_32F: float32 math, no TF32
// library_types.h (cudaDataType_t)
enum DataType : int { kR32F = 0, kR16BF = 14 };

// cublasLt.h: attribute enums (only the values used; each attribute's value type in the comment).
enum MatmulDescAttribute : int {
  kDescTransA = 3,  // int32_t (Operation)
  kDescTransB = 4,  // int32_t (Operation)
};
enum MatrixLayoutAttribute : int {
  kLayoutBatchCount = 5,          // int32_t
  kLayoutStridedBatchOffset = 6,  // int64_t, elements
};
enum MatmulPreferenceAttribute : int {
  kPrefMaxWorkspaceBytes = 1,  // uint64_t
  kPrefMinAlignmentABytes = 5,  // uint32_t (default 256)
  kPrefMinAlignmentBBytes = 6,
  kPrefMinAlignmentCBytes = 7,
  kPrefMinAlignmentDBytes = 8,
};

struct Context;  // cublasLtContext
using Handle = Context*;
struct MatmulDescOpaque;
using MatmulDesc = MatmulDescOpaque*;
struct MatrixLayoutOpaque;
using MatrixLayout = MatrixLayoutOpaque*;
struct MatmulPreferenceOpaque;
using MatmulPreference = MatmulPreferenceOpaque*;
struct MatmulAlgo {
  uint64_t data[8];
};
struct HeuristicResult {
  MatmulAlgo algo;
  size_t workspaceSize;
  Status state;
  float wavesCount;
  int reserved[4];
};
static_assert(sizeof(MatmulAlgo) == 64, "cublasLtMatmulAlgo_t is uint64_t[8]");
static_assert(sizeof(HeuristicResult) == 96, "cublasLtMatmulHeuristicResult_t layout");

// The entry points, resolved from the loaded library.
struct Api {
  Status (*create)(Handle*);
  size_t (*getVersion)();
  Status (*matmulDescCreate)(MatmulDesc*, ComputeType computeType, DataType scaleType);
  Status (*matmulDescDestroy)(MatmulDesc);
  Status (*matmulDescSetAttribute)(MatmulDesc, MatmulDescAttribute, const void* buf, size_t bytes);
  Status (*matrixLayoutCreate)(MatrixLayout*, DataType type, uint64_t rows, uint64_t cols, int64_t ld);
  Status (*matrixLayoutDestroy)(MatrixLayout);
  Status (*matrixLayoutSetAttribute)(MatrixLayout, MatrixLayoutAttribute, const void* buf, size_t bytes);
  Status (*matmulPreferenceCreate)(MatmulPreference*);
  Status (*matmulPreferenceDestroy)(MatmulPreference);
  Status (*matmulPreferenceSetAttribute)(MatmulPreference, MatmulPreferenceAttribute, const void* buf,
                                         size_t bytes);
  Status (*matmulAlgoGetHeuristic)(Handle, MatmulDesc, MatrixLayout a, MatrixLayout b, MatrixLayout c,
                                   MatrixLayout d, MatmulPreference, int requestedAlgoCount,
                                   HeuristicResult results[], int* returnAlgoCount);
  Status (*matmul)(Handle, MatmulDesc, const void* alpha, const void* a, MatrixLayout aDesc, const void* b,
                   MatrixLayout bDesc, const void* beta, const void* c, MatrixLayout cDesc, void* d,
                   MatrixLayout dDesc, const MatmulAlgo* algo, void* workspace, size_t workspaceBytes,
                   CUstream_st* stream);
  size_t version;    // cublasLtGetVersion(), e.g. 120805 for 12.8.5
  std::string path;  // the file that was loaded
};

// "CUBLAS_STATUS_INVALID_VALUE", ... (the names of cublas_api.h).
const char* statusName(Status status);

// A row-major product C [M, N] = op(A) [M, K] · op(B) [K, N] as the column-major one cuBLASLt
// computes, D' = op(A') · op(B'). A row-major [R, C] matrix with row stride ld is, read column-major,
// its transpose [C, R] with the same ld; so D' = Cᵀ [N, M] = op(B)ᵀ · op(A)ᵀ: A' is our B and B' our
// A, each with its own transpose flag, and the layouts below describe the stored matrices.
struct ColumnMajorMatrix {
  Operation op;  // how the product reads it (A', B'); kOpN for D'
  uint64_t rows, cols;
  int64_t ld;
};
struct ColumnMajorGemm {
  ColumnMajorMatrix a;  // A' = our B: op(A') is [N, K]
  ColumnMajorMatrix b;  // B' = our A: op(B') is [K, M]
  ColumnMajorMatrix d;  // D' = our C, [N, M] with ld N
};
ColumnMajorGemm columnMajorGemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k);

// ---------------------------------------------------------------------------------------------
// The loader. Search order (the first file that opens and exports every entry point wins):
//   1. $RLHF_CUBLASLT_PATH (a file), when set;
//   2. libcublasLt.so.13, then libcublasLt.so.12, on the dynamic linker's default search path;
//   3. $CUDA_HOME/lib64 and /usr/local/cuda/lib64, .so.13 then .so.12 in each;
//   4. Python's NVIDIA wheels under $VIRTUAL_ENV, $CONDA_PREFIX, $HOME/.local, /opt/conda, /usr/local
//      and /usr: <prefix>/lib/python3*/{site,dist}-packages/nvidia/cu13/lib/libcublasLt.so.13 (the
//      CUDA 13 wheels) and .../nvidia/cublas/lib/libcublasLt.so.12 (the cu12 wheels).

// What the search reads from the environment (separated so that tests can supply their own).
struct SearchEnv {
  std::string explicitPath;  // RLHF_CUBLASLT_PATH
  std::string cudaHome;      // CUDA_HOME
  std::string virtualEnv;    // VIRTUAL_ENV
  std::string condaPrefix;   // CONDA_PREFIX
  std::string home;          // HOME
  // The fixed system locations: /usr/local/cuda for the toolkit; /opt/conda, /usr/local and /usr
  // for Python. Tests replace them with directories of their own.
  std::string systemCuda = "/usr/local/cuda";
  std::vector<std::string> systemPythonPrefixes = {"/opt/conda", "/usr/local", "/usr"};
};
SearchEnv searchEnvFromProcess();

// The candidate files in search order, without duplicates (Python's site-packages directories are
// globbed, so only existing ones contribute).
std::vector<std::string> candidatePaths(const SearchEnv& env);

struct LoadAttempt {
  std::string path;
  std::string error;  // dlopen's message, or the entry point that is missing
};
struct LoadResult {
  void* library = nullptr;  // dlopen handle; null when every candidate failed
  Api api{};                // valid when library is set
  std::vector<LoadAttempt> failures;  // every candidate tried before the one that loaded
};
// Tries each candidate in order (RTLD_NOW | RTLD_LOCAL) and resolves every entry point.
LoadResult openFirst(const std::vector<std::string>& candidates);

// One line per failed attempt: "  <path>: <error>".
std::string describeFailures(const std::vector<LoadAttempt>& failures);

// The process-wide library, loaded on the first call (thread-safe); null when none loaded.
const Api* api();
// How the search went: "cuBLASLt 12.8.5 from <path>" (with the candidates that failed before it), or
// "no cuBLASLt ..." with every attempt and its error.
std::string loadReport();

}  // namespace rlhf::cuda::lt
