// The CUDA kernel benchmarks (rlhf_cuda_bench, built by CMakeLists.txt with nvcc; run by
// scripts/gpu-check.sh on a GPU machine). BENCH(name) registers a function that times kernels with
// BenchContext::time() and reports rows; main prints one table (and JSON with --json) with each
// row's median time, its rate, and that rate as a share of the card's ceilings measured in the same
// run (a large bf16 GEMM for compute, a device-to-device copy for bandwidth).
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace rlhf::bench {

struct Row {
  std::string kernel;
  std::string shape;
  double ms;          // median per call
  double work;        // per call: FLOP (for "TFLOP/s" rows) or bytes moved (for "GB/s" rows)
  bool computeBound;  // rate in TFLOP/s against the GEMM ceiling, else GB/s against the copy ceiling
  double peakBytes;   // device memory of one call above what was live before it
  std::string note;   // e.g. "cuBLASLt" or "fallback GEMM"
};

class Context {
 public:
  // Median milliseconds of fn over `reps` calls after `warmup` calls, timed with CUDA events on
  // the backend's stream. Also records the peak device memory of one call (peakBytes()).
  double time(const std::function<void()>& fn, int reps = 20, int warmup = 3);
  double lastPeakBytes() const { return lastPeakBytes_; }
  void report(Row row) { rows.push_back(std::move(row)); }
  std::vector<Row> rows;

 private:
  double lastPeakBytes_ = 0;
};

void registerBench(const char* name, std::function<void(Context&)> fn);

struct Registrar {
  Registrar(const char* name, std::function<void(Context&)> fn) { registerBench(name, std::move(fn)); }
};

}  // namespace rlhf::bench

#define RLHF_BENCH_CONCAT2(a, b) a##b
#define RLHF_BENCH_CONCAT(a, b) RLHF_BENCH_CONCAT2(a, b)
#define BENCH(name)                                                                                   \
  static void RLHF_BENCH_CONCAT(bench_, name)(::rlhf::bench::Context&);                             \
  static ::rlhf::bench::Registrar RLHF_BENCH_CONCAT(benchRegistrar_, name)(#name,                   \
                                                                          RLHF_BENCH_CONCAT(bench_, name)); \
  static void RLHF_BENCH_CONCAT(bench_, name)(::rlhf::bench::Context & ctx)
