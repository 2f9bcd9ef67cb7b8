#!/usr/bin/env python3
"""CPU contractions side by side in one run: encc's forward+backward (build/bench/enc_bench),
OpenBLAS sgemm in the same process, and PyTorch's CPU kernels (Debian's python3-torch, when
installed) on the same shapes, same thread count, one after the other. GramMatrix and
Encoding run in torch as PyTorch-Encoding writes them (a batched matmul; torch operations).

    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/contractions.py [--repetitions 3]

OPENBLAS_CORETYPE only picks OpenBLAS's kernels for the sgemm reference (Debian's OpenBLAS
does not know Zen 4); it changes nothing in encc or torch. Prints one table (markdown).
"""
import argparse
import json
import os
import subprocess
import sys
import time

# name in enc_bench -> (label, the torch layer or None, input shape); the work is enc_bench's
# GFLOP/s counter
CASES = {
    "BM_Conv2d_ResNet": ("Conv2d 64->64 3x3 pad 1", ("conv", 64, 64, 3, 1, 1), (8, 64, 56, 56)),
    "BM_Conv2d_FewChannels": ("Conv2d 3->8 3x3 pad 1", ("conv", 3, 8, 3, 1, 1), (8, 3, 64, 64)),
    "BM_Conv2d_Stride2": ("Conv2d 64->128 3x3 pad 1 stride 2", ("conv", 64, 128, 3, 1, 2), (8, 64, 56, 56)),
    "BM_Linear": ("Linear 1024->1024", ("linear", 1024, 1024), (512, 1024)),
    "BM_Conv2d_Fused": ("Conv2d 64->64 3x3 pad 1", ("conv", 64, 64, 3, 1, 1), (8, 64, 32, 32)),
    "BM_Gram_Fused": ("GramMatrix", ("gram",), (8, 128, 32, 32)),
    "BM_Inspiration_Fused": ("Inspiration(128)", None, (8, 128, 32, 32)),
    "BM_Encoding_Fused": ("Encoding(128, 32)", ("encoding", 128, 32), (8, 128, 1024)),
    "BM_UpsampleConv2d_Fused": ("UpsampleConv2d 64->32 r=2", None, (4, 64, 32, 32)),
}


def run_encc(binary, repetitions, min_time):
    names = "|".join(list(CASES) + ["BM_Sgemm"])
    cmd = [binary, f"--benchmark_filter={names}", f"--benchmark_min_time={min_time}",
           f"--benchmark_repetitions={repetitions}", "--benchmark_report_aggregates_only=true",
           "--benchmark_format=json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = {}
    for b in json.loads(out)["benchmarks"]:
        name = b["run_name"].split("/")[0]  # "BM_Linear/real_time"
        if b.get("aggregate_name") != "median" or name not in list(CASES) + ["BM_Sgemm"]:
            continue
        rows[name] = b
    return rows


def time_torch(kind, shape, repetitions, threads):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if kind[0] == "conv":
        _, ci, co, k, pad, stride = kind
        layer = torch.nn.Conv2d(ci, co, k, padding=pad, stride=stride)
    elif kind[0] == "linear":
        layer = torch.nn.Linear(kind[1], kind[2])
    elif kind[0] == "gram":  # PyTorch-Encoding's GramMatrix: a batched matmul
        def layer(x):
            b, c, h, w = x.shape
            f = x.view(b, c, h * w)
            return f.bmm(f.transpose(1, 2)) / (c * h * w)
    else:  # PyTorch-Encoding's Encoding written with torch operations (its CPU path)
        _, d, k = kind
        codewords = torch.empty(k, d).uniform_(-1 / (k * d) ** 0.5, 1 / (k * d) ** 0.5).requires_grad_()
        scale = torch.empty(k).uniform_(-1, 0).requires_grad_()

        def layer(x):
            f = x.transpose(1, 2)  # [B, N, D]
            r = f.unsqueeze(2) - codewords  # [B, N, K, D]
            a = torch.softmax(scale * r.pow(2).sum(3), dim=2)
            return (a.unsqueeze(3) * r).sum(1)
    x = torch.randn(*shape, requires_grad=True)
    g = torch.randn_like(layer(x))

    def step():
        layer(x).backward(g)

    step()
    # as many runs as fill ~0.5 s, median of `repetitions` such batches
    start = time.perf_counter()
    step()
    once = time.perf_counter() - start
    n = max(1, int(0.5 / max(once, 1e-6)))
    medians = []
    for _ in range(repetitions):
        start = time.perf_counter()
        for _ in range(n):
            step()
        medians.append((time.perf_counter() - start) / n)
    medians.sort()
    return medians[len(medians) // 2] * 1e3


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default=os.path.join(here, "..", "build", "bench", "enc_bench"))
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--min-time", type=float, default=0.5)
    args = parser.parse_args()
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} not found: build it first (bash scripts/build.sh enc_bench)")

    rows = run_encc(args.binary, args.repetitions, args.min_time)
    sgemm = rows.get("BM_Sgemm", {}).get("GFLOP/s")
    threads = int(next(iter(rows.values())).get("threads", 2)) if rows else 2
    print(f"OpenBLAS sgemm 1024^3: {sgemm:.0f} GFLOP/s ({rows['BM_Sgemm'].get('label', '')})" if sgemm else
          "OpenBLAS sgemm: not built (no CBLAS)")
    print()
    print("| layer, forward + backward | input | encc | GFLOP/s | vs sgemm | torch | encc vs torch |")
    print("|---|---|---|---|---|---|---|")
    for name, (label, kind, shape) in CASES.items():
        r = rows.get(name)
        if r is None:
            continue
        ms = r["real_time"]
        rate = r.get("GFLOP/s", 0)
        torch_ms = time_torch(kind, shape, args.repetitions, threads) if kind else None
        vs = f"{100 * rate / sgemm:.0f} %" if sgemm and rate else "—"
        tcol = f"{torch_ms:.2f} ms" if torch_ms else "—"
        ratio = f"{torch_ms / ms:.2f}x faster" if torch_ms and torch_ms >= ms else (
            f"{ms / torch_ms:.2f}x slower" if torch_ms else "—")
        print(f"| {label} | {list(shape)} | {ms:.2f} ms | {rate:.0f} | {vs} | {tcol} | {ratio} |")


if __name__ == "__main__":
    main()
