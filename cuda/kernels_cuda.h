// The CUDA backend: the kernels of src/kernels.h on the GPU, plus the device memory and conversion
// functions the binding uses for tensor storage (the same names as src/cpu/device.h). Only built
// by CMakeLists.txt when nvcc is found. No CUDA types appear here, so host code that includes this
// header needs no CUDA headers.
//
// Execution model: every kernel and copy is enqueued on one compute stream (stream.cuh), so kernel
// launches return to the host at once; copies to the host and the few scalar results (losses,
// norms) wait for the stream. Device memory comes from a stream-ordered pool (memory.cu): after the
// first steps no call allocates from the driver. Every CUDA call and launch is checked; failures
// throw CudaError, which the binding turns into a JavaScript exception.
//
// Types: kernels templated on T are instantiated for T = float and T = bf16 (bfloat16 storage,
// float32 accumulation), following the conventions of src/kernels.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "../src/dtype.h"
#include "../src/kernels.h"
#include "../src/memory.h"

namespace rlhf::cuda {

class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct DeviceInfo {
  int deviceCount;         // 0 when no usable GPU/driver
  std::string error;       // why deviceCount is 0, if CUDA said
  int runtimeVersion;      // e.g. 13000
  int driverVersion;       // 0 without a driver
  std::string deviceName;  // of device 0
  int computeMajor, computeMinor;
  size_t totalMemory;
};
// Never throws: a machine without a GPU or driver reports 0 devices and the reason.
DeviceInfo deviceInfo();

// ---------------------------------------------------------------------------------------------
// Device memory (memory.cu). Pointers are device pointers; host pointers are host memory.

// Device pointers are not host pointers: the binding stages host reads and writes.
constexpr bool kHostMemory = false;
// Every kernel templated on T takes bfloat16 tensors too.
constexpr bool kComputesBf16 = true;

// From the pool, ordered on the compute stream. Out of memory throws CudaError with the size.
void* deviceAlloc(size_t bytes);
void deviceFree(void* ptr, size_t bytes);
void zeroDevice(void* ptr, size_t bytes);
// Host <-> device copies; both return when the data has arrived (the host buffer may be reused).
void copyToDevice(void* dst, const void* src, size_t bytes);
void copyToHost(void* dst, const void* src, size_t bytes);
// Device -> device, ordered on the stream; overlapping ranges are allowed.
void copyOnDevice(void* dst, const void* src, size_t bytes);
// Bytes allocated through deviceAlloc (live, peak since the last reset, buffers).
MemoryStats deviceMemoryStats();
void resetDevicePeakBytes();
// Waits for every enqueued kernel and copy.
void synchronize();

// dst[i] = src[i] converted on the device (float32 <-> bfloat16 rounding to nearest even,
// int32 -> float); contiguous, `count` elements.
void convert(const void* src, DType from, void* dst, DType to, int64_t count);

// ---------------------------------------------------------------------------------------------
// Kernels. Instantiated for matmul: (float, float), (bf16, bf16), (bf16, float).

template <typename T, typename TC>
void matmul(const MatmulArgsT<T, TC>& args);
template <typename T, typename TG>
void matmulBackward(const MatmulBackwardArgsT<T, TG>& args);

// The GEMM backend of matmul and lora (matmul.cu): cuBLASLt, loaded at run time (cublaslt.h), or
// the handwritten kernels. RLHF_CUDA_GEMM=fallback in the environment (or forceGemmFallback(true),
// which overrides it) selects the handwritten kernels even when cuBLASLt loads; RLHF_CUDA_GEMM=auto
// (the default) uses cuBLASLt when it loads.
void forceGemmFallback(bool force);
bool gemmFallbackForced();
// True when products run on cuBLASLt: it loaded, its handle was created on the device (the first
// call creates it), no fallback is forced.
bool gemmUsesCublasLt();
// For `doctor`: the backend in use and why (the library loaded and every path that failed, or why
// the handwritten kernels run). Never throws.
std::string gemmBackendDescription();

template <typename T>
void embedding(const EmbeddingArgsT<T>& args);
template <typename T>
void embeddingBackward(const EmbeddingBackwardArgsT<T>& args);

template <typename T>
void rmsNorm(const RmsNormArgsT<T>& args);
template <typename T>
void rmsNormBackward(const RmsNormBackwardArgsT<T>& args);

// invFreq is computed on the host (as transformers does, in float32) and copied to the device.
void ropeFrequencies(const RopeFrequencyArgs& args);
template <typename T>
void rope(const RopeArgsT<T>& args);
template <typename T>
void ropeBackward(const RopeBackwardArgsT<T>& args);

template <typename T>
void attention(const AttentionArgsT<T>& args);
template <typename T>
void attentionBackward(const AttentionBackwardArgsT<T>& args);

template <typename T>
void siluMul(const SiluMulArgsT<T>& args);
template <typename T>
void siluMulBackward(const SiluMulBackwardArgsT<T>& args);
template <typename T>
void addInto(const AddIntoArgsT<T>& args);

template <typename T>
void lora(const LoraArgsT<T>& args);
template <typename T>
void loraBackward(const LoraBackwardArgsT<T>& args);

template <typename T>
void logprobGather(const LogprobGatherArgsT<T>& args);
template <typename T>
void logprobGatherBackward(const LogprobGatherBackwardArgsT<T>& args);

void dpoLoss(const DpoLossArgs& args);
void ktoLoss(const KtoLossArgs& args);
void orpoLoss(const OrpoLossArgs& args);
void cpoLoss(const CpoLossArgs& args);
void grpoLoss(const GrpoLossArgs& args);

template <typename T>
void crossEntropy(const CrossEntropyArgsT<T>& args);
template <typename T>
void crossEntropyBackward(const CrossEntropyBackwardArgsT<T>& args);

// One fused launch over every tensor of the list.
void adamw(const AdamWArgs& args);
double sumOfSquares(const TensorList& tensors);
void scaleInPlace(const TensorList& tensors, float factor);

}  // namespace rlhf::cuda
