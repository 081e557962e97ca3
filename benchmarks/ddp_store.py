"""Attribution-store precompute on 1 process vs N processes (gloo, CPU): wall time and equality.

The IG store of a CNN teacher over Fashion-MNIST training images, computed with the store's
distributed path (rank r takes chunks c % N == r, rank 0 merges after a barrier) against one
process, interleaved ``--repeats`` times; prints the medians and the speed-up. Needs N free cores.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ddp_store.py --images 2000 --processes 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from xdistill.data import load_dataset
from xdistill.explain import integrated_gradients
from xdistill.models import build_model
from xdistill.store import AttributionStore


def compute(rank: int, world_size: int, root: str, x: torch.Tensor, n_steps: int, port: int) -> None:
    torch.set_num_threads(1)
    if world_size > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world_size)
    torch.manual_seed(0)
    teacher = build_model("cnn", 1, 10, width=1.0).eval()

    def explain_chunk(start: int, end: int) -> torch.Tensor:
        return integrated_gradients(teacher, x[start:end], None, n_steps=n_steps)

    store = AttributionStore.create(root, {"teacher": "random cnn"}, x.shape[0], tuple(x.shape[1:]), chunk_size=100)
    store.compute(
        explain_chunk,
        progress=False,
        rank=rank,
        world_size=world_size,
        barrier=dist.barrier if world_size > 1 else None,
    )
    if world_size > 1:
        dist.destroy_process_group()


def timed(world_size: int, x: torch.Tensor, n_steps: int, port: int) -> tuple[float, np.ndarray]:
    root = tempfile.mkdtemp(prefix="ddp-store-")
    try:
        start = time.perf_counter()
        if world_size == 1:
            compute(0, 1, root, x, n_steps, port)
        else:
            mp.spawn(compute, args=(world_size, root, x, n_steps, port), nprocs=world_size)
        seconds = time.perf_counter() - start
        return seconds, np.load(Path(root) / "maps.npy")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--n-steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    train, _ = load_dataset("fashion_mnist", max_train=args.images)
    x = train.x[: args.images].contiguous()
    one, many = [], []
    for repeat in range(args.repeats):
        seconds, single = timed(1, x, args.n_steps, 29500 + repeat)
        one.append(seconds)
        seconds, shared = timed(args.processes, x, args.n_steps, 29600 + repeat)
        many.append(seconds)
        assert np.allclose(single, shared, atol=1e-6), "the distributed store differs from the single-process one"
    a, b = statistics.median(one), statistics.median(many)
    print(f"IG store, {args.images} Fashion-MNIST images, {args.n_steps} steps, CNN w=1, medians of {args.repeats}:")
    print(
        f"  1 process: {a:.1f} s; {args.processes} processes: {b:.1f} s (process start-up included); "
        f"speed-up {a / b:.2f}x; maps equal"
    )


if __name__ == "__main__":
    main()
