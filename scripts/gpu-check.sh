#!/usr/bin/env bash
# GPU validation in one call, for a lent GPU machine (CUDA toolkit, CMake, Python with PyTorch;
# Node.js optional). Builds the native test executable and the CUDA benchmarks for the card present,
# runs the CUDA-vs-CPU parity tests for every kernel, the kernel benchmarks (with the card's GEMM and
# copy ceilings measured in the same run) and the PyTorch comparison, and prints one short summary.
# Everything it produces goes to $OUT (default ./gpu-check-out): copy the figures into
# docs/benchmarks.md with the card, the date and this command.
#
#   bash scripts/gpu-check.sh            # everything (~5-8 minutes on an H100)
#   bash scripts/gpu-check.sh tests      # parity tests only
#   bash scripts/gpu-check.sh bench      # benchmarks only (build included)
set -uo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }
: > "$OUT/summary.txt"

log "machine"
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader | tee -a "$OUT/summary.txt"
nvcc --version | tail -1 | tee -a "$OUT/summary.txt"
date -u +"%Y-%m-%d %H:%M UTC" | tee -a "$OUT/summary.txt"
git log -1 --format="commit %h %s" 2>/dev/null | tee -a "$OUT/summary.txt"
if command -v node >/dev/null; then node_bin=node
elif [ -x .tools/node/bin/node ]; then node_bin=$PWD/.tools/node/bin/node
else node_bin=""; fi
echo "node: ${node_bin:-absent (the native executables cover the kernels)}" | tee -a "$OUT/summary.txt"

# cuBLASLt: the addon loads it at run time; point it at PyTorch's copy when the toolkit has none.
find_torch_cublaslt() {
  python3 - 2>/dev/null <<'PY'
import glob, os, site
for prefix in site.getsitepackages() + [site.getusersitepackages()]:
    for pattern in ("nvidia/cu13/lib/libcublasLt.so.13", "nvidia/cublas/lib/libcublasLt.so.1[23]"):
        hits = sorted(glob.glob(os.path.join(prefix, pattern)))
        if hits:
            print(hits[-1])
            raise SystemExit
PY
}
if [ -z "${RLHF_CUBLASLT_PATH:-}" ] && ! ls /usr/local/cuda/lib64/libcublasLt.so.* >/dev/null 2>&1; then
  found=$(find_torch_cublaslt)
  [ -n "$found" ] && export RLHF_CUBLASLT_PATH=$found
fi
echo "cuBLASLt: ${RLHF_CUBLASLT_PATH:-found by the addon search path (CUDA toolkit)}" | tee -a "$OUT/summary.txt"

# SASS for the card present only: a fraction of CI's five-architecture build time.
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.[:space:]')
log "build (sm_${cap})"
generator=$(command -v ninja >/dev/null && echo Ninja || echo "Unix Makefiles")
cmake -S . -B build-gpu -G "$generator" -DCMAKE_BUILD_TYPE=Release -DRLHF_REQUIRE_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${cap}-real" > "$OUT/cmake.log" 2>&1 || { tail -20 "$OUT/cmake.log"; exit 1; }
cmake --build build-gpu -j "$(nproc)" --target rlhf_native_tests rlhf_cuda_bench > "$OUT/build.log" 2>&1 \
  || { grep -E "error" "$OUT/build.log" | head -40; exit 1; }

status=0
if [ "$what" = all ] || [ "$what" = tests ]; then
  log "parity tests (CUDA vs CPU)"
  ./build-gpu/rlhf_native_tests > "$OUT/native-tests.txt" 2>&1 || status=1
  grep -E "FAIL|^native:" "$OUT/native-tests.txt" | tee -a "$OUT/summary.txt"
  grep -B1 -A6 "FAIL" "$OUT/native-tests.txt" | head -80
fi

if [ "$what" = all ] || [ "$what" = bench ]; then
  log "kernel benchmarks"
  ./build-gpu/rlhf_cuda_bench --json "$OUT/bench.json" > "$OUT/bench.txt" 2>&1 || status=1
  cat "$OUT/bench.txt" | tee -a "$OUT/summary.txt"
  log "PyTorch on the same card, same computations"
  python3 scripts/gpu_bench_torch.py --json "$OUT/torch.json" > "$OUT/torch.txt" 2>&1 || status=1
  cat "$OUT/torch.txt" | tee -a "$OUT/summary.txt"
fi
exit $status
