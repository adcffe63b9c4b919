"""PyTorch baselines for scripts/gpu-check.sh: the computations rlhf-native's CUDA kernels replace,
written as a PyTorch user (TRL, PEFT) runs them eagerly, timed on the same card with CUDA events and
measured for peak memory. Only the GPU validation script uses this; the package needs no Python.

    python3 scripts/gpu_bench_torch.py [--json FILE]
"""
import argparse
import json

import torch
import torch.nn.functional as F


def timed(fn, reps=20, warmup=3):
    """Median milliseconds of fn() and the peak memory one call adds above what was allocated."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    times = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    times.sort()
    return times[len(times) // 2], peak


def logprob_gather(n, v, d, backward):
    """TRL's selective log-softmax on fp32 logits of a bf16 lm_head (the AMP path), then a sum."""
    hidden = torch.randn(n, d, device="cuda", dtype=torch.bfloat16, requires_grad=backward)
    weight = (torch.randn(v, d, device="cuda", dtype=torch.bfloat16) * 0.02).requires_grad_(backward)
    targets = torch.randint(0, v, (n,), device="cuda")

    def step():
        logits = (hidden @ weight.T).float()
        logp = torch.gather(logits.log_softmax(-1), 1, targets[:, None]).squeeze(1)
        if backward:
            logp.sum().backward()
            hidden.grad = None
            weight.grad = None

    return step


def lora(m, k, n, r, backward):
    """PEFT's LoRA linear on a bf16 base layer with float32 adapters (autocast_adapter_dtype)."""
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, requires_grad=backward)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
    a = (torch.randn(r, k, device="cuda") * 0.02).requires_grad_(backward)
    b = (torch.randn(n, r, device="cuda") * 0.02).requires_grad_(backward)
    scale = 2.0

    def step():
        y = F.linear(x, w)
        y = (y + F.linear(F.linear(x.float(), a), b) * scale).to(torch.bfloat16)
        if backward:
            y.float().sum().backward()
            x.grad = a.grad = b.grad = None

    return step


def base_linear(m, k, n, backward):
    """The frozen bf16 base layer alone (forward, and dX for the backward)."""
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16, requires_grad=backward)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02

    def step():
        y = F.linear(x, w)
        if backward:
            y.float().sum().backward()
            x.grad = None

    return step


def dpo_loss(pairs, beta=0.1):
    """TRL's sigmoid DPO loss and its gradient with respect to the policy log-probs."""
    pc = torch.randn(pairs, device="cuda", requires_grad=True)
    pr = torch.randn(pairs, device="cuda", requires_grad=True)
    rc, rr = torch.randn(pairs, device="cuda"), torch.randn(pairs, device="cuda")

    def step():
        loss = -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()
        loss.backward()
        pc.grad = pr.grad = None

    return step


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json")
    args = parser.parse_args()
    cases = [
        ("logprobGather bf16 N=4096 V=128256 D=4096 fwd", logprob_gather(4096, 128256, 4096, False)),
        ("logprobGather bf16 N=4096 V=128256 D=4096 fwd+bwd", logprob_gather(4096, 128256, 4096, True)),
        ("logprobGather bf16 N=8192 V=32000 D=2048 fwd+bwd", logprob_gather(8192, 32000, 2048, True)),
        ("linear bf16 M=4096 K=2048 N=8192 fwd+bwd", base_linear(4096, 2048, 8192, True)),
        ("lora bf16 M=4096 K=2048 N=8192 r=16 fwd+bwd", lora(4096, 2048, 8192, 16, True)),
        ("linear bf16 M=4096 K=8192 N=2048 fwd+bwd", base_linear(4096, 8192, 2048, True)),
        ("lora bf16 M=4096 K=8192 N=2048 r=16 fwd+bwd", lora(4096, 8192, 2048, 16, True)),
        ("dpoLoss sigmoid 64 pairs fwd+bwd", dpo_loss(64)),
        ("dpoLoss sigmoid 4096 pairs fwd+bwd", dpo_loss(4096)),
    ]
    rows = []
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    print(f"{'computation':<52} {'ms':>10} {'peak':>12}")
    for name, fn in cases:
        ms, peak = timed(fn)
        rows.append({"name": name, "ms": ms, "peakBytes": peak})
        print(f"{name:<52} {ms:>10.3f} {peak / 2**20:>9.1f} MiB")
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "device": torch.cuda.get_device_name(), "rows": rows}, f)


if __name__ == "__main__":
    main()
