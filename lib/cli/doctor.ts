/**
 * `rlhf-native doctor`: which backend runs and why, the CPU and GPU the kernels see, the driver and
 * runtime versions, and every addon path tried (as node-llama-cpp's `inspect gpu` does).
 */
import * as os from "os";

import { backendInfo, nativeFunction } from "../native/addon";
import { BackendChoice, CudaInfo } from "../native/backend";

interface CpuInfo {
  threads: number;
  gemmKernels: string;
}

export interface DoctorReport {
  version: string;
  node: string;
  platform: string;
  backend: BackendChoice;
  cpu: { model: string; cores: number } & CpuInfo;
}

/** "12.4" from CUDA's 12040. */
function cudaVersion(v: number): string {
  return v ? `${Math.floor(v / 1000)}.${(v % 1000) / 10}` : "none";
}

export function doctorReport(version: string): DoctorReport {
  const backend = backendInfo();
  const cpuInfo = nativeFunction<() => CpuInfo>("cpuInfo")();
  return {
    version,
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    backend,
    cpu: { model: os.cpus()[0]?.model ?? "unknown", cores: os.cpus().length, ...cpuInfo },
  };
}

function describeCuda(info: CudaInfo): string[] {
  return [
    `GPU:      ${info.deviceName} (compute ${info.computeCapability}, ${(info.totalMemory / 2 ** 30).toFixed(1)} GiB)`,
    `CUDA:     driver ${cudaVersion(info.driverVersion)}, runtime ${cudaVersion(info.runtimeVersion)} (static)`,
    ...(info.gemmBackend ? [`matmuls:  ${info.gemmBackend}`] : []),
  ];
}

export function formatDoctorReport(r: DoctorReport): string {
  const lines = [
    `rlhf-native ${r.version}, Node ${r.node}, ${r.platform}`,
    `backend:  ${r.backend.reason}`,
    `CPU:      ${r.cpu.model}, ${r.cpu.cores} cores, kernels use ${r.cpu.threads} threads (RLHF_NUM_THREADS), GEMM micro-kernels: ${r.cpu.gemmKernels}`,
    ...(r.backend.cuda ? describeCuda(r.backend.cuda) : []),
    "addons tried:",
    ...r.backend.attempts.map((a) => `  [${a.backend}] ${a.path}: ${a.ok ? "ok, " : ""}${a.reason}`),
  ];
  return lines.join("\n");
}
