// rlhf_cuda_bench [filter] [--json FILE]: measures the card's ceilings, runs every registered
// benchmark whose name contains `filter`, prints one table and optionally writes JSON.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>

#include "../../cuda/device_buffer.cuh"
#include "../../cuda/runtime.cuh"
#include "bench.h"

namespace rlhf::bench {
namespace {

std::map<std::string, std::function<void(Context&)>>& registry() {
  static std::map<std::string, std::function<void(Context&)>> all;
  return all;
}

struct Ceilings {
  double gemmTflops;  // bf16 8192³ through cuda::matmul (cuBLASLt when it loads)
  double copyGBs;     // device-to-device copy of 1 GiB, read + write bytes
};

Ceilings measureCeilings(Context& ctx) {
  Ceilings c{};
  {
    const size_t bytes = size_t{1} << 30;
    cuda::DeviceBuffer<char> a(bytes), b(bytes);
    const double ms = ctx.time([&] { cuda::copyOnDevice(b.data(), a.data(), bytes); }, 10, 2);
    c.copyGBs = 2.0 * static_cast<double>(bytes) / (ms * 1e6);
  }
  {
    const int64_t n = 8192;
    cuda::DeviceBuffer<bf16> a(n * n), b(n * n), out(n * n);
    cuda::zeroDevice(a.data(), n * n * sizeof(bf16));
    cuda::zeroDevice(b.data(), n * n * sizeof(bf16));
    MatmulArgsT<bf16, bf16> p{a.data(), b.data(), out.data(), 1, n, n, n, false, true, 0, 0, 0, 1.0f, 0.0f};
    const double ms = ctx.time([&] { cuda::matmul(p); }, 10, 2);
    c.gemmTflops = 2.0 * n * n * n / (ms * 1e9);
  }
  ctx.rows.clear();
  return c;
}

std::string formatBytes(double b) {
  char buf[32];
  if (b >= (1 << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1 << 30));
  else if (b >= (1 << 20)) std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1 << 20));
  else std::snprintf(buf, sizeof buf, "%.0f KiB", b / 1024);
  return buf;
}

}  // namespace

void registerBench(const char* name, std::function<void(Context&)> fn) { registry()[name] = std::move(fn); }

double Context::time(const std::function<void()>& fn, int reps, int warmup) {
  cudaStream_t s = cuda::stream();
  const MemoryStats before = cuda::deviceMemoryStats();
  cuda::resetDevicePeakBytes();
  for (int i = 0; i < warmup; ++i) fn();
  lastPeakBytes_ = static_cast<double>(cuda::deviceMemoryStats().peakBytes - before.liveBytes);
  std::vector<float> samples;
  cudaEvent_t start, stop;
  cuda::check(cudaEventCreate(&start), "cudaEventCreate");
  cuda::check(cudaEventCreate(&stop), "cudaEventCreate");
  for (int i = 0; i < reps; ++i) {
    cuda::check(cudaEventRecord(start, s), "cudaEventRecord");
    fn();
    cuda::check(cudaEventRecord(stop, s), "cudaEventRecord");
    cuda::check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    cuda::check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    samples.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

}  // namespace rlhf::bench

int main(int argc, char** argv) {
  using namespace rlhf;
  std::string filter, jsonPath;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc) jsonPath = argv[++i];
    else filter = argv[i];
  }
  const cuda::DeviceInfo info = cuda::deviceInfo();
  if (info.deviceCount == 0) {
    std::fprintf(stderr, "rlhf_cuda_bench: no CUDA device (%s)\n", info.error.c_str());
    return 1;
  }
  bench::Context ctx;
  const bench::Ceilings ceil = bench::measureCeilings(ctx);
  std::printf("device: %s (sm_%d%d), runtime %d, driver %d\n", info.deviceName.c_str(), info.computeMajor,
              info.computeMinor, info.runtimeVersion, info.driverVersion);
  std::printf("ceilings: bf16 GEMM 8192^3 %.1f TFLOP/s, device copy %.0f GB/s\n\n", ceil.gemmTflops, ceil.copyGBs);
  for (auto& [name, fn] : bench::registry()) {
    if (!filter.empty() && name.find(filter) == std::string::npos) continue;
    fn(ctx);
  }
  std::printf("%-22s %-38s %10s %14s %9s %10s  %s\n", "kernel", "shape", "ms", "rate", "ceiling", "peak", "note");
  for (const auto& r : ctx.rows) {
    const double rate = r.computeBound ? r.work / (r.ms * 1e9) : r.work / (r.ms * 1e6);
    const double share = 100.0 * rate / (r.computeBound ? ceil.gemmTflops : ceil.copyGBs);
    char rateText[32];
    std::snprintf(rateText, sizeof rateText, "%.2f %s", rate, r.computeBound ? "TFLOP/s" : "GB/s");
    std::printf("%-22s %-38s %10.3f %14s %8.1f%% %10s  %s\n", r.kernel.c_str(), r.shape.c_str(), r.ms, rateText,
                share, bench::formatBytes(r.peakBytes).c_str(), r.note.c_str());
  }
  if (!jsonPath.empty()) {
    std::ofstream out(jsonPath);
    out << "{\"device\":\"" << info.deviceName << "\",\"gemmTflops\":" << ceil.gemmTflops
        << ",\"copyGBs\":" << ceil.copyGBs << ",\"rows\":[";
    for (size_t i = 0; i < ctx.rows.size(); ++i) {
      const auto& r = ctx.rows[i];
      out << (i ? "," : "") << "{\"kernel\":\"" << r.kernel << "\",\"shape\":\"" << r.shape << "\",\"ms\":" << r.ms
          << ",\"work\":" << r.work << ",\"computeBound\":" << (r.computeBound ? "true" : "false")
          << ",\"peakBytes\":" << r.peakBytes << ",\"note\":\"" << r.note << "\"}";
    }
    out << "]}\n";
  }
  return 0;
}
