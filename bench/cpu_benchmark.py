"""A small CPU benchmark that reports its result the way gpuq-agent reads it.

It stands in for a real GPU benchmark in the end-to-end test and shows benchmark
authors the contract: seed the data with GPUQ_RUN_SEED, and report the accuracy in
the file GPUQ_RESULT_FILE as JSON `{"accuracy": 97.5}` (or print a line
`GPUQ_RESULT accuracy=97.5`). Here: a nearest-centroid classifier on seeded points,
trained and scored for about `--seconds` seconds.

    gpuq-agent run -- python bench/cpu_benchmark.py --seconds 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    seconds = parser.parse_args().seconds
    rng = random.Random(int(os.environ.get("GPUQ_RUN_SEED", "0")))
    centres = [(rng.uniform(-5, 5), rng.uniform(-5, 5)) for _ in range(4)]
    correct = total = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        label = rng.randrange(len(centres))
        x, y = (c + rng.gauss(0, 1.0) for c in centres[label])
        guess = min(range(len(centres)), key=lambda i: (centres[i][0] - x) ** 2 + (centres[i][1] - y) ** 2)
        correct += guess == label
        total += 1
    accuracy = round(100 * correct / max(total, 1), 2)
    result_file = os.environ.get("GPUQ_RESULT_FILE")
    if result_file:
        with open(result_file, "w") as out:
            json.dump({"accuracy": accuracy, "points": total}, out)
    print(f"classified {total} points")
    print(f"GPUQ_RESULT accuracy={accuracy}")


if __name__ == "__main__":
    main()
