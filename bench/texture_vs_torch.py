#!/usr/bin/env python3
"""Training images/s of the Deep TEN texture network (examples/texture) in encc and the same
network in PyTorch on the CPU, one after the other in one run, same batch (64 RGB crops of
32x32), same thread count.

    /usr/bin/python3 bench/texture_vs_torch.py [--epochs 3]

encc's figure is the example's own images/s (forward, backward and the AdamW step; the data
preparation is not timed), median over the epochs after the first. PyTorch runs the same
layers (Encoding written with torch operations, as PyTorch-Encoding's CPU path is), forward,
backward and AdamW on random crops, median of 5 timings of 10 steps.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time


def encc_images_per_second(binary, epochs):
    out = subprocess.run([binary, "--epochs", str(epochs)], check=True, capture_output=True, text=True).stdout
    rates = [float(m) for m in re.findall(r"(\d+) images/s", out)]
    if len(rates) < 2:
        sys.exit(f"no images/s in the output of {binary}:\n{out}")
    return statistics.median(rates[1:])


def torch_images_per_second(threads, batch=64, crop=32, width=16, d=32, k=8, classes=8):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)

    class BasicBlock(nn.Module):
        def __init__(self, planes):
            super().__init__()
            self.conv1 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)

        def forward(self, x):
            return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + x)

    class Encoding(nn.Module):
        def __init__(self, d, k):
            super().__init__()
            self.codewords = nn.Parameter(torch.empty(k, d).uniform_(-1 / (k * d) ** 0.5, 1 / (k * d) ** 0.5))
            self.scale = nn.Parameter(torch.empty(k).uniform_(-1, 0))

        def forward(self, x):
            b, dd = x.shape[:2]
            f = x.view(b, dd, -1).transpose(1, 2)  # [B, N, D]
            r = f.unsqueeze(2) - self.codewords  # [B, N, K, D]
            a = torch.softmax(self.scale * r.pow(2).sum(3), dim=2)
            return (a.unsqueeze(3) * r).sum(1)

    class DeepTen(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.layer1 = BasicBlock(width)
            self.conv2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(2 * width)
            self.layer2 = BasicBlock(2 * width)
            self.head = nn.Sequential(nn.Conv2d(2 * width, d, 1), nn.BatchNorm2d(d), nn.ReLU(), Encoding(d, k))
            self.fc = nn.Linear(k * d, classes)

        def forward(self, x):
            x = self.layer1(F.relu(self.bn1(self.conv1(x))))
            x = self.layer2(F.relu(self.bn2(self.conv2(x))))
            return self.fc(F.normalize(self.head(x).flatten(1), dim=1))

    model = DeepTen()
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=1e-4)
    x = torch.rand(batch, 3, crop, crop)
    t = torch.randint(0, classes, (batch,))

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), t).backward()
        opt.step()

    for _ in range(3):
        step()
    rates = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(10):
            step()
        rates.append(10 * batch / (time.perf_counter() - start))
    return statistics.median(rates), torch.__version__


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default=os.path.join(here, "..", "build", "examples", "texture"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    encc = encc_images_per_second(args.binary, args.epochs)
    try:
        torch_rate, version = torch_images_per_second(args.threads)
    except ImportError:
        torch_rate, version = None, None
    print(f"Deep TEN training, batch 64 of 3x32x32, {args.threads} threads")
    print(f"  encc:  {encc:7.0f} images/s")
    if torch_rate:
        print(f"  torch: {torch_rate:7.0f} images/s (PyTorch {version})  -> encc {encc / torch_rate:.2f}x")
    else:
        print("  torch: not installed (Debian python3-torch)")


if __name__ == "__main__":
    main()
