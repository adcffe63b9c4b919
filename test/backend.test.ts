import * as path from "path";

import { backendInfo } from "../lib";
import { doctorReport, formatDoctorReport } from "../lib/cli/doctor";
import { chooseBackend, cudaAddonCandidates, parseDevice } from "../lib/native/backend";

describe("backend selection", () => {
  it("device=cpu loads the CPU addon and records the path", () => {
    const { mod, choice } = chooseBackend("cpu");
    expect(mod.backend).toBe("cpu");
    expect(choice.backend).toBe("cpu");
    expect(choice.reason).toBe("cpu: device=cpu");
    expect(choice.attempts).toEqual([expect.objectContaining({ backend: "cpu", ok: true, reason: "loaded" })]);
  });

  it("looks for the CUDA addon at RLHF_NATIVE_CUDA_ADDON first, then the local build", () => {
    const saved = process.env.RLHF_NATIVE_CUDA_ADDON;
    process.env.RLHF_NATIVE_CUDA_ADDON = "/nonexistent/rlhf_native.node";
    try {
      const candidates = cudaAddonCandidates();
      expect(candidates[0]).toBe("/nonexistent/rlhf_native.node");
      expect(candidates[1]).toBe(path.resolve(__dirname, "..", "build-cuda", "Release", "rlhf_native.node"));
      const { choice } = chooseBackend("auto");
      expect(choice.attempts[0]).toEqual({ backend: "cuda", path: "/nonexistent/rlhf_native.node", ok: false, reason: "not found" });
      // Without a GPU (this machine, CI) auto falls back to the CPU and says why; with one it takes it.
      if (choice.backend === "cpu") {
        expect(choice.reason).toMatch(/^cpu: device=auto and no CUDA addon with a GPU \(not found/);
      } else {
        expect(choice.cuda!.deviceCount).toBeGreaterThan(0);
      }
    } finally {
      if (saved === undefined) delete process.env.RLHF_NATIVE_CUDA_ADDON;
      else process.env.RLHF_NATIVE_CUDA_ADDON = saved;
    }
  });

  it("device=cuda without a usable GPU is an error that lists every path tried", () => {
    let result: ReturnType<typeof chooseBackend> | undefined;
    let error: Error | undefined;
    try {
      result = chooseBackend("cuda");
    } catch (err) {
      error = err as Error;
    }
    if (result) {
      expect(result.choice.cuda!.deviceCount).toBeGreaterThan(0); // a GPU machine
    } else {
      expect(error!.name).toBe("RlhfError");
      expect(error!.message).toMatch(/device "cuda" was requested but no CUDA addon with a usable GPU was found/);
      for (const candidate of cudaAddonCandidates()) expect(error!.message).toContain(candidate);
    }
  });

  it("rejects an unknown device name", () => {
    expect(() => parseDevice("gpu", "RLHF_NATIVE_DEVICE")).toThrow('RLHF_NATIVE_DEVICE must be one of auto, cpu, cuda; got "gpu"');
  });

  it("doctor reports the backend, the CPU kernels and every addon tried", () => {
    const report = doctorReport("9.9.9");
    expect(report.backend).toBe(backendInfo());
    expect(report.cpu.threads).toBeGreaterThanOrEqual(1);
    expect(["avx2", "portable"]).toContain(report.cpu.gemmKernels);
    const text = formatDoctorReport(report);
    expect(text).toMatch(/^rlhf-native 9\.9\.9, Node v\d+/);
    expect(text).toContain(`backend:  ${report.backend.reason}`);
    for (const a of report.backend.attempts) expect(text).toContain(`[${a.backend}] ${a.path}`);
  });
});
