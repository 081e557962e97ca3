"""Attribution-store precompute throughput: IG into the resumable on-disk store vs the same IG
kept in memory (the store's overhead: memmap writes, flushes, manifest per chunk).

Both are timed side by side in one run, interleaved, medians. Run:
    .venv/bin/python benchmarks/store_throughput.py [--n 2048] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from xdistill.data import load_dataset
from xdistill.explain import integrated_gradients
from xdistill.models import build_model
from xdistill.store import AttributionStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--n-steps", type=int, default=20)
    args = parser.parse_args()
    train, _ = load_dataset("fashion_mnist", max_train=args.n, max_test=10)
    torch.manual_seed(0)
    teacher = build_model("cnn", 1, 10, width=0.5).eval()

    def explain(start: int, end: int) -> torch.Tensor:
        return integrated_gradients(teacher, train.x[start:end], train.y[start:end], n_steps=args.n_steps)

    def in_memory() -> None:
        torch.cat([explain(s, min(args.n, s + args.chunk)) for s in range(0, args.n, args.chunk)])

    def into_store() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            store = AttributionStore(tmp, {"bench": 1}, args.n, train.input_shape, args.chunk)
            store.compute(explain, progress=False)

    times = {"in_memory": [], "store": []}
    for _ in range(args.repeats):
        for name, fn in (("in_memory", in_memory), ("store", into_store)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"fashion_mnist n={args.n}, IG {args.n_steps} steps, chunk {args.chunk}, teacher cnn w=0.5")
    for name, value in median.items():
        print(f"  {name:<10} {value:7.2f} s  ({args.n / value:7.1f} samples/s)")
    print(f"  store / in-memory time: {median['store'] / median['in_memory']:.3f}")


if __name__ == "__main__":
    main()
