// Finding and loading libcublasLt at run time (see cublaslt.h for the search order).
#include <dlfcn.h>
#include <glob.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>

#include "cublaslt.h"

namespace rlhf::cuda::lt {
namespace {

std::string envOr(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

void addUnique(std::vector<std::string>& out, const std::string& path) {
  if (std::find(out.begin(), out.end(), path) == out.end()) out.push_back(path);
}

// Every existing directory matching `pattern`, sorted (glob's order).
std::vector<std::string> globDirectories(const std::string& pattern) {
  std::vector<std::string> out;
  glob_t matches{};
  if (glob(pattern.c_str(), GLOB_ONLYDIR, nullptr, &matches) == 0) {
    for (size_t i = 0; i < matches.gl_pathc; ++i) out.emplace_back(matches.gl_pathv[i]);
  }
  globfree(&matches);
  return out;
}

// Resolves every entry point into `api`; returns the name of the first missing one, or null.
const char* resolve(void* library, Api& api) {
  struct Entry {
    const char* name;
    void** slot;
  };
  const Entry entries[] = {
      {"cublasLtCreate", reinterpret_cast<void**>(&api.create)},
      {"cublasLtGetVersion", reinterpret_cast<void**>(&api.getVersion)},
      {"cublasLtMatmulDescCreate", reinterpret_cast<void**>(&api.matmulDescCreate)},
      {"cublasLtMatmulDescDestroy", reinterpret_cast<void**>(&api.matmulDescDestroy)},
      {"cublasLtMatmulDescSetAttribute", reinterpret_cast<void**>(&api.matmulDescSetAttribute)},
      {"cublasLtMatrixLayoutCreate", reinterpret_cast<void**>(&api.matrixLayoutCreate)},
      {"cublasLtMatrixLayoutDestroy", reinterpret_cast<void**>(&api.matrixLayoutDestroy)},
      {"cublasLtMatrixLayoutSetAttribute", reinterpret_cast<void**>(&api.matrixLayoutSetAttribute)},
      {"cublasLtMatmulPreferenceCreate", reinterpret_cast<void**>(&api.matmulPreferenceCreate)},
      {"cublasLtMatmulPreferenceDestroy", reinterpret_cast<void**>(&api.matmulPreferenceDestroy)},
      {"cublasLtMatmulPreferenceSetAttribute", reinterpret_cast<void**>(&api.matmulPreferenceSetAttribute)},
      {"cublasLtMatmulAlgoGetHeuristic", reinterpret_cast<void**>(&api.matmulAlgoGetHeuristic)},
      {"cublasLtMatmul", reinterpret_cast<void**>(&api.matmul)},
  };
  for (const Entry& e : entries) {
    *e.slot = dlsym(library, e.name);
    if (!*e.slot) return e.name;
  }
  return nullptr;
}

std::string versionText(size_t v) {
  // cublasLtGetVersion(): major * 10000 + minor * 100 + patch.
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

struct Loaded {
  LoadResult result;
  std::string report;
};

const Loaded& loaded() {
  // Never unloaded: cuBLASLt stays mapped for the life of the process.
  static const Loaded* state = [] {
    auto* s = new Loaded;
    const SearchEnv env = searchEnvFromProcess();
    s->result = openFirst(candidatePaths(env));
    if (s->result.library) {
      s->report = "cuBLASLt " + versionText(s->result.api.version) + " from " + s->result.api.path;
      if (!s->result.failures.empty()) s->report += "; tried before it:\n" + describeFailures(s->result.failures);
    } else {
      s->report = "no cuBLASLt (set RLHF_CUBLASLT_PATH to a libcublasLt.so.12 or .so.13); tried:\n" +
                  describeFailures(s->result.failures);
    }
    return s;
  }();
  return *state;
}

}  // namespace

const char* statusName(Status status) {
  switch (status) {
    case kStatusSuccess: return "CUBLAS_STATUS_SUCCESS";
    case kStatusNotInitialized: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case kStatusAllocFailed: return "CUBLAS_STATUS_ALLOC_FAILED";
    case kStatusInvalidValue: return "CUBLAS_STATUS_INVALID_VALUE";
    case kStatusArchMismatch: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case kStatusMappingError: return "CUBLAS_STATUS_MAPPING_ERROR";
    case kStatusExecutionFailed: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case kStatusInternalError: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case kStatusNotSupported: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case kStatusLicenseError: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "unknown cuBLAS status";
}

ColumnMajorGemm columnMajorGemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k) {
  ColumnMajorGemm g{};
  // Our B is stored [K, N] (row-major, ld N), i.e. column-major [N, K] = op(B)ᵀ already: no
  // transpose; or, with transB, stored [N, K] (ld K), i.e. column-major [K, N], transposed to [N, K].
  g.a = transB ? ColumnMajorMatrix{kOpT, static_cast<uint64_t>(k), static_cast<uint64_t>(n), k}
               : ColumnMajorMatrix{kOpN, static_cast<uint64_t>(n), static_cast<uint64_t>(k), n};
  // Our A is stored [M, K] (ld K), column-major [K, M] = op(A)ᵀ; or, with transA, [K, M] (ld M),
  // column-major [M, K], transposed to [K, M].
  g.b = transA ? ColumnMajorMatrix{kOpT, static_cast<uint64_t>(m), static_cast<uint64_t>(k), m}
               : ColumnMajorMatrix{kOpN, static_cast<uint64_t>(k), static_cast<uint64_t>(m), k};
  g.d = ColumnMajorMatrix{kOpN, static_cast<uint64_t>(n), static_cast<uint64_t>(m), n};
  return g;
}

SearchEnv searchEnvFromProcess() {
  SearchEnv env;
  env.explicitPath = envOr("RLHF_CUBLASLT_PATH");
  env.cudaHome = envOr("CUDA_HOME");
  env.virtualEnv = envOr("VIRTUAL_ENV");
  env.condaPrefix = envOr("CONDA_PREFIX");
  env.home = envOr("HOME");
  return env;
}

std::vector<std::string> candidatePaths(const SearchEnv& env) {
  static const char* const kNames[] = {"libcublasLt.so.13", "libcublasLt.so.12"};
  std::vector<std::string> out;
  if (!env.explicitPath.empty()) addUnique(out, env.explicitPath);
  for (const char* name : kNames) addUnique(out, name);
  std::vector<std::string> toolkits;
  if (!env.cudaHome.empty()) toolkits.push_back(env.cudaHome);
  toolkits.push_back(env.systemCuda);
  for (const std::string& root : toolkits) {
    for (const char* name : kNames) addUnique(out, root + "/lib64/" + name);
  }
  std::vector<std::string> prefixes;
  if (!env.virtualEnv.empty()) prefixes.push_back(env.virtualEnv);
  if (!env.condaPrefix.empty()) prefixes.push_back(env.condaPrefix);
  if (!env.home.empty()) prefixes.push_back(env.home + "/.local");
  prefixes.insert(prefixes.end(), env.systemPythonPrefixes.begin(), env.systemPythonPrefixes.end());
  for (const std::string& prefix : prefixes) {
    for (const std::string& packages : globDirectories(prefix + "/lib/python3*/*-packages")) {
      addUnique(out, packages + "/nvidia/cu13/lib/libcublasLt.so.13");
      addUnique(out, packages + "/nvidia/cublas/lib/libcublasLt.so.12");
    }
  }
  return out;
}

LoadResult openFirst(const std::vector<std::string>& candidates) {
  LoadResult result;
  for (const std::string& path : candidates) {
    dlerror();  // clear any earlier message
    void* library = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!library) {
      const char* why = dlerror();
      std::string message = why ? why : "dlopen failed";
      if (message.rfind(path + ": ", 0) == 0) message.erase(0, path.size() + 2);  // dlerror repeats the path
      result.failures.push_back({path, message});
      continue;
    }
    Api api{};
    if (const char* missing = resolve(library, api)) {
      result.failures.push_back({path, std::string("loaded, but it does not export ") + missing});
      dlclose(library);
      continue;
    }
    api.version = api.getVersion();
    api.path = path;
    result.library = library;
    result.api = api;
    return result;
  }
  return result;
}

std::string describeFailures(const std::vector<LoadAttempt>& failures) {
  std::string out;
  for (const LoadAttempt& f : failures) out += "  " + f.path + ": " + f.error + "\n";
  return out;
}

const Api* api() {
  const Loaded& l = loaded();
  return l.result.library ? &l.result.api : nullptr;
}

std::string loadReport() { return loaded().report; }

}  // namespace rlhf::cuda::lt
