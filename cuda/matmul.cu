// matmul and matmulBackward (src/kernels.h §1) on the GPU, and the GEMM dispatcher under them and
// LoRA: cuBLASLt when it loaded (cublaslt.h), else the handwritten kernels (gemm_tiled.cu).
//
// cuBLASLt calls: the row-major product is cuBLASLt's column-major one with the operands swapped
// (lt::columnMajorGemm); batches are strided batches (stride 0 broadcasts an input); compute type
// CUBLAS_COMPUTE_32F with float32 alpha/beta, so float32 inputs get float32 math (no TF32) and bf16
// inputs float32 accumulation; the output is T, or float32 for bf16 inputs (master gradients). The
// descriptors and the heuristic's algorithm are built once per problem (types, shape, transposes,
// strides, pointer alignments) and cached for the life of the process; the workspace comes from
// the memory pool for each call.
#include <cstdlib>
#include <map>
#include <mutex>
#include <tuple>
#include <type_traits>

#include "cublaslt.h"
#include "device_buffer.cuh"
#include "gemm.cuh"
#include "runtime.cuh"

namespace rlhf::cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// Backend selection.

struct Selection {
  bool forced = false;     // handwritten kernels even when cuBLASLt loads
  std::string envError;    // an RLHF_CUDA_GEMM value we do not know
};

std::mutex gSelectionMutex;

Selection& selection() {
  static Selection* s = [] {
    auto* sel = new Selection;
    const char* v = std::getenv("RLHF_CUDA_GEMM");
    const std::string value = v ? v : "";
    if (value == "fallback") {
      sel->forced = true;
    } else if (!value.empty() && value != "auto") {
      sel->envError = "RLHF_CUDA_GEMM must be \"auto\" or \"fallback\", got \"" + value + "\"";
    }
    return sel;
  }();
  return *s;
}

// The cuBLASLt handle, created on first use (it needs the device).
struct LtHandle {
  lt::Handle handle = nullptr;
  std::string error;  // why creation failed
};

const LtHandle& ltHandle() {
  static const LtHandle* h = [] {
    const lt::Api* api = lt::api();
    if (api) stream();  // initialises the runtime and the device's primary context first
    auto* state = new LtHandle;
    if (api) {
      const lt::Status s = api->create(&state->handle);
      if (s != lt::kStatusSuccess) {
        state->handle = nullptr;
        state->error = std::string("cublasLtCreate failed: ") + lt::statusName(s);
      }
    }
    return state;
  }();
  return *h;
}

// True when this call should go to cuBLASLt; throws for a bad RLHF_CUDA_GEMM.
bool useCublasLt() {
  {
    std::lock_guard<std::mutex> lock(gSelectionMutex);
    const Selection& sel = selection();
    if (!sel.envError.empty()) throw CudaError(sel.envError);
    if (sel.forced) return false;
  }
  return ltHandle().handle != nullptr;
}

// ---------------------------------------------------------------------------------------------
// cuBLASLt plans.

constexpr uint64_t kMaxWorkspaceBytes = 32ull << 20;  // NVIDIA's recommendation for Hopper

template <typename T>
constexpr lt::DataType dataType() {
  return std::is_same_v<T, float> ? lt::kR32F : lt::kR16BF;
}

// The largest power of two up to 256 dividing the address and, for batches, the stride in bytes:
// what cuBLASLt may assume of every batch item's pointer.
uint32_t alignmentOf(const void* p, int64_t strideElements, size_t elementBytes, bool batched) {
  uint64_t bits = reinterpret_cast<uintptr_t>(p);
  if (batched) bits |= static_cast<uint64_t>(strideElements) * elementBytes;
  uint32_t align = 256;
  while (align > 1 && bits % align != 0) align >>= 1;
  return align;
}

struct PlanKey {
  int abType, cType;
  bool transA, transB;
  int64_t batch, m, n, k, strideA, strideB, strideC;
  uint32_t alignA, alignB, alignC;
  bool operator<(const PlanKey& o) const {
    return std::tie(abType, cType, transA, transB, batch, m, n, k, strideA, strideB, strideC, alignA, alignB, alignC) <
           std::tie(o.abType, o.cType, o.transA, o.transB, o.batch, o.m, o.n, o.k, o.strideA, o.strideB, o.strideC,
                    o.alignA, o.alignB, o.alignC);
  }
};

struct Plan {
  bool ok = false;
  lt::MatmulDesc desc = nullptr;
  lt::MatrixLayout a = nullptr, b = nullptr, d = nullptr;  // A' (our B), B' (our A), C = D (ours C)
  lt::MatmulAlgo algo{};
  size_t workspace = 0;
};

// Builds the descriptors and asks the heuristic for the best algorithm; plan.ok is false (and
// nothing is kept) when cuBLASLt refuses the problem or finds no algorithm, and the caller then
// runs the handwritten kernels.
Plan buildPlan(const lt::Api& api, lt::Handle handle, const PlanKey& key) {
  Plan plan;
  const lt::ColumnMajorGemm g = lt::columnMajorGemm(key.transA, key.transB, key.m, key.n, key.k);
  const auto abType = static_cast<lt::DataType>(key.abType), cType = static_cast<lt::DataType>(key.cType);
  lt::MatmulPreference pref = nullptr;
  bool ok = api.matmulDescCreate(&plan.desc, lt::kCompute32F, lt::kR32F) == lt::kStatusSuccess;
  auto setDesc = [&](lt::MatmulDescAttribute attr, int32_t value) {
    ok = ok && api.matmulDescSetAttribute(plan.desc, attr, &value, sizeof value) == lt::kStatusSuccess;
  };
  setDesc(lt::kDescTransA, g.a.op);
  setDesc(lt::kDescTransB, g.b.op);
  auto layout = [&](lt::MatrixLayout& out, lt::DataType type, const lt::ColumnMajorMatrix& mat, int64_t stride) {
    ok = ok && api.matrixLayoutCreate(&out, type, mat.rows, mat.cols, mat.ld) == lt::kStatusSuccess;
    if (key.batch > 1) {
      const int32_t count = static_cast<int32_t>(key.batch);
      ok = ok && api.matrixLayoutSetAttribute(out, lt::kLayoutBatchCount, &count, sizeof count) == lt::kStatusSuccess;
      ok = ok && api.matrixLayoutSetAttribute(out, lt::kLayoutStridedBatchOffset, &stride, sizeof stride) ==
                     lt::kStatusSuccess;
    }
  };
  layout(plan.a, abType, g.a, key.strideB);
  layout(plan.b, abType, g.b, key.strideA);
  layout(plan.d, cType, g.d, key.strideC);
  ok = ok && api.matmulPreferenceCreate(&pref) == lt::kStatusSuccess;
  auto setPref = [&](lt::MatmulPreferenceAttribute attr, const void* value, size_t bytes) {
    ok = ok && api.matmulPreferenceSetAttribute(pref, attr, value, bytes) == lt::kStatusSuccess;
  };
  setPref(lt::kPrefMaxWorkspaceBytes, &kMaxWorkspaceBytes, sizeof kMaxWorkspaceBytes);
  setPref(lt::kPrefMinAlignmentABytes, &key.alignB, sizeof key.alignB);  // A' is our B
  setPref(lt::kPrefMinAlignmentBBytes, &key.alignA, sizeof key.alignA);
  setPref(lt::kPrefMinAlignmentCBytes, &key.alignC, sizeof key.alignC);
  setPref(lt::kPrefMinAlignmentDBytes, &key.alignC, sizeof key.alignC);
  lt::HeuristicResult result{};
  int found = 0;
  ok = ok && api.matmulAlgoGetHeuristic(handle, plan.desc, plan.a, plan.b, plan.d, plan.d, pref, 1, &result, &found) ==
                 lt::kStatusSuccess;
  ok = ok && found > 0 && result.state == lt::kStatusSuccess;
  if (pref) api.matmulPreferenceDestroy(pref);
  if (!ok) {
    if (plan.desc) api.matmulDescDestroy(plan.desc);
    for (lt::MatrixLayout l : {plan.a, plan.b, plan.d}) {
      if (l) api.matrixLayoutDestroy(l);
    }
    return Plan{};
  }
  plan.ok = true;
  plan.algo = result.algo;
  plan.workspace = result.workspaceSize;
  return plan;
}

std::mutex gPlanMutex;

// Runs the product on cuBLASLt; false when cuBLASLt cannot take it (dimensions beyond int32, or no
// algorithm), leaving it to the handwritten kernels.
template <typename T, typename TC>
bool cublasLtGemm(const GemmOp<T, T, TC>& op) {
  constexpr int64_t kMaxDim = 0x7fffffff;
  if (op.m > kMaxDim || op.n > kMaxDim || op.k > kMaxDim || op.batch > kMaxDim) return false;
  const lt::Api& api = *lt::api();
  const bool batched = op.batch > 1;
  const PlanKey key{dataType<T>(),
                    dataType<TC>(),
                    op.transA,
                    op.transB,
                    op.batch,
                    op.m,
                    op.n,
                    op.k,
                    batched ? op.strideA : 0,
                    batched ? op.strideB : 0,
                    batched ? op.strideC : 0,
                    alignmentOf(op.a, op.strideA, sizeof(T), batched),
                    alignmentOf(op.b, op.strideB, sizeof(T), batched),
                    alignmentOf(op.c, op.strideC, sizeof(TC), batched)};
  std::lock_guard<std::mutex> lock(gPlanMutex);
  // Plans live as long as the process (cuBLASLt stays loaded).
  static auto* plans = new std::map<PlanKey, Plan>;
  auto it = plans->find(key);
  if (it == plans->end()) it = plans->emplace(key, buildPlan(api, ltHandle().handle, key)).first;
  const Plan& plan = it->second;
  if (!plan.ok) return false;
  DeviceBuffer<char> workspace(plan.workspace);
  const float alpha = op.alpha, beta = op.beta;
  const lt::Status s = api.matmul(ltHandle().handle, plan.desc, &alpha, op.b, plan.a, op.a, plan.b, &beta, op.c,
                                  plan.d, op.c, plan.d, &plan.algo, workspace.data(), plan.workspace, stream());
  if (s != lt::kStatusSuccess) {
    throw CudaError(std::string("cublasLtMatmul failed: ") + lt::statusName(s) + " (M = " + std::to_string(op.m) +
                    ", N = " + std::to_string(op.n) + ", K = " + std::to_string(op.k) + ", batch = " +
                    std::to_string(op.batch) + ")");
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// K = 0: C[b] = beta · C[b] (zero when beta = 0, whatever C held).

constexpr unsigned kScaleThreads = 256;

template <typename D>
__global__ void scaleItemsKernel(D* c, int64_t perItem, int64_t strideC, int64_t total, float beta) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= total) return;
  D* p = c + (i / perItem) * strideC + i % perItem;
  *p = fromFloat<D>(beta == 0.0f ? 0.0f : beta * toFloat(*p));
}

template <typename TC>
void scaleItems(TC* c, int64_t batch, int64_t perItem, int64_t strideC, float beta) {
  const int64_t total = batch * perItem;
  scaleItemsKernel<<<blocksFor(total, kScaleThreads), kScaleThreads, 0, stream()>>>(devicePtr(c), perItem, strideC,
                                                                                    total, beta);
  checkLaunch("scaleItemsKernel");
}

// The operands of batch item i alone.
template <typename TA, typename TB, typename TC>
GemmOp<TA, TB, TC> item(GemmOp<TA, TB, TC> op, int64_t i) {
  op.a += i * op.strideA;
  op.b += i * op.strideB;
  op.c += i * op.strideC;
  op.batch = 1;
  return op;
}

}  // namespace

template <typename T, typename TC>
void gemm(const GemmOp<T, T, TC>& op) {
  if (op.batch <= 0 || op.m <= 0 || op.n <= 0) return;
  if (op.k == 0) {
    if (op.beta != 1.0f) scaleItems(op.c, op.batch, op.m * op.n, op.strideC, op.beta);
    return;
  }
  if (useCublasLt() && cublasLtGemm(op)) return;
  gemmFallback(op);
}

template <typename T, typename TC>
void matmul(const MatmulArgsT<T, TC>& p) {
  const GemmOp<T, T, TC> op{p.a, p.b, p.c, p.batch, p.m, p.n, p.k, p.transA, p.transB,
                            p.strideA, p.strideB, p.strideC, p.alpha, p.beta};
  if (p.strideC == 0 && p.batch > 1) {
    // Every item updates the same C, in order (as the CPU reference does).
    for (int64_t i = 0; i < p.batch; ++i) gemm(item(op, i));
    return;
  }
  gemm(op);
}

template <typename T, typename TG>
void matmulBackward(const MatmulBackwardArgsT<T, TG>& p) {
  if (p.batch <= 0) return;
  // Runs a gradient product over the batch; a broadcast gradient (stride 0) sums the items' products
  // in order, the first one overwriting unless accumulating.
  auto run = [&](const GemmOp<T, T, TG>& op, bool broadcast) {
    if (!broadcast || p.batch == 1) {
      gemm(op);
      return;
    }
    for (int64_t i = 0; i < p.batch; ++i) {
      GemmOp<T, T, TG> one = item(op, i);
      one.beta = (p.accumulate || i > 0) ? 1.0f : 0.0f;
      gemm(one);
    }
  };
  const float beta = p.accumulate ? 1.0f : 0.0f;
  if (p.dA) {
    if (!p.transA) {
      // dA [M, K] = dC [M, N] · op(B)ᵀ [N, K]
      run({p.dC, p.b, p.dA, p.batch, p.m, p.k, p.n, false, !p.transB, p.strideC, p.strideB, p.strideA, 1.0f, beta},
          p.strideA == 0);
    } else {
      // A is stored [K, M]: dA = op(B) [K, N] · dCᵀ [N, M]
      run({p.b, p.dC, p.dA, p.batch, p.k, p.m, p.n, p.transB, true, p.strideB, p.strideC, p.strideA, 1.0f, beta},
          p.strideA == 0);
    }
  }
  if (p.dB) {
    if (!p.transB) {
      // dB [K, N] = op(A)ᵀ [K, M] · dC [M, N]
      run({p.a, p.dC, p.dB, p.batch, p.k, p.n, p.m, !p.transA, false, p.strideA, p.strideC, p.strideB, 1.0f, beta},
          p.strideB == 0);
    } else {
      // B is stored [N, K]: dB = dCᵀ [N, M] · op(A) [M, K]
      run({p.dC, p.a, p.dB, p.batch, p.n, p.k, p.m, true, p.transA, p.strideC, p.strideA, p.strideB, 1.0f, beta},
          p.strideB == 0);
    }
  }
}

void forceGemmFallback(bool force) {
  std::lock_guard<std::mutex> lock(gSelectionMutex);
  selection().forced = force;
}

bool gemmFallbackForced() {
  std::lock_guard<std::mutex> lock(gSelectionMutex);
  return selection().forced;
}

bool gemmUsesCublasLt() {
  {
    std::lock_guard<std::mutex> lock(gSelectionMutex);
    const Selection& sel = selection();
    if (sel.forced || !sel.envError.empty()) return false;
  }
  return ltHandle().handle != nullptr;
}

std::string gemmBackendDescription() {
  std::string forced;
  {
    std::lock_guard<std::mutex> lock(gSelectionMutex);
    const Selection& sel = selection();
    if (!sel.envError.empty()) return "invalid GEMM selection: " + sel.envError;
    if (sel.forced) {
      forced = "handwritten GEMM kernels (fallback forced by RLHF_CUDA_GEMM=fallback or forceGemmFallback); ";
    }
  }
  if (!lt::api()) return (forced.empty() ? "handwritten GEMM kernels; " : forced) + lt::loadReport();
  if (!forced.empty()) return forced + lt::loadReport();
  // Creating the handle needs a usable device; without one, report what loaded.
  if (deviceInfo().deviceCount == 0) return lt::loadReport() + " (no CUDA device to create a handle on)";
  try {
    const LtHandle& h = ltHandle();
    if (!h.handle) return "handwritten GEMM kernels; " + lt::loadReport() + ", but " + h.error;
  } catch (const CudaError& e) {
    return lt::loadReport() + " (" + e.what() + ")";
  }
  return lt::loadReport();
}

template void gemm<float, float>(const GemmOp<float, float, float>&);
template void gemm<bf16, bf16>(const GemmOp<bf16, bf16, bf16>&);
template void gemm<bf16, float>(const GemmOp<bf16, bf16, float>&);

template void matmul<float, float>(const MatmulArgsT<float, float>&);
template void matmul<bf16, bf16>(const MatmulArgsT<bf16, bf16>&);
template void matmul<bf16, float>(const MatmulArgsT<bf16, float>&);
template void matmulBackward<float, float>(const MatmulBackwardArgsT<float, float>&);
template void matmulBackward<bf16, bf16>(const MatmulBackwardArgsT<bf16, bf16>&);
template void matmulBackward<bf16, float>(const MatmulBackwardArgsT<bf16, float>&);

}  // namespace rlhf::cuda
