"""A GPU benchmark for bench/gpu_check.sh: seeded matrix products on CUDA for `--seconds`,
then a least-squares fit whose accuracy (percent of seeded labels recovered) it reports
the way gpuq-agent reads it. Needs PyTorch with CUDA; exits 2 with a message otherwise."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--size", type=int, default=8192)
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("gpu_benchmark: PyTorch is not installed", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("gpu_benchmark: no CUDA device", file=sys.stderr)
        return 2
    generator = torch.Generator(device="cuda").manual_seed(int(os.environ.get("GPUQ_RUN_SEED", "0")))
    a = torch.randn(args.size, args.size, device="cuda", generator=generator, dtype=torch.float16)
    b = torch.randn(args.size, args.size, device="cuda", generator=generator, dtype=torch.float16)
    products = 0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        for _ in range(20):
            a = torch.tanh(a @ b)
        torch.cuda.synchronize()
        products += 20
    points = torch.randn(100_000, 16, device="cuda", generator=generator)
    truth = torch.randn(16, 1, device="cuda", generator=generator)
    labels = (points @ truth > 0).float()
    fit = torch.linalg.lstsq(points, labels * 2 - 1).solution
    accuracy = round(100 * float(((points @ fit > 0).float() == labels).float().mean()), 2)
    result_file = os.environ.get("GPUQ_RESULT_FILE")
    if result_file:
        with open(result_file, "w") as out:
            json.dump({"accuracy": accuracy, "products": products}, out)
    print(f"{products} products of {args.size}x{args.size}")
    print(f"GPUQ_RESULT accuracy={accuracy}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
