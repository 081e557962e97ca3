"""IG throughput: xdistill vs Captum, and vs the n_steps x (forward+backward) bound.

All timings are taken side by side in one run, interleaved, and reported as medians.
Run:  .venv/bin/python benchmarks/ig_throughput.py [--repeats 7] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from xdistill.explain import integrated_gradients
from xdistill.models import build_model


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_case(name: str, model: torch.nn.Module, x: torch.Tensor, n_steps: int, repeats: int) -> dict:
    from captum.attr import IntegratedGradients

    device = x.device
    model.eval()
    target = torch.zeros(x.shape[0], dtype=torch.long, device=device)
    captum_ig = IntegratedGradients(model)
    batch = x.shape[0]
    everything = batch * n_steps

    def ours(chunk):
        return lambda: integrated_gradients(model, x, target, n_steps=n_steps, rule="gauss_legendre", chunk_size=chunk)

    def theirs(chunk):
        return lambda: captum_ig.attribute(
            x, target=target, n_steps=n_steps, method="gausslegendre", internal_batch_size=chunk
        )

    def bound():  # n_steps x one forward+backward of the batch
        for _ in range(n_steps):
            xi = x.detach().requires_grad_(True)
            out = model(xi).gather(1, target[:, None]).sum()
            torch.autograd.grad(out, xi)

    cases = {
        "xdistill_all_steps": ours(everything),
        "captum_all_steps": theirs(None),
        "xdistill_one_step_per_chunk": ours(batch),
        "captum_one_step_per_chunk": theirs(batch),
        "xdistill_default_chunk": lambda: integrated_gradients(model, x, target, n_steps=n_steps),
        "n_steps_x_fwd_bwd": bound,
    }
    for fn in cases.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for key, fn in cases.items():
            times[key].append(timed(fn, device))
    median = {k: statistics.median(v) for k, v in times.items()}
    samples_per_s = {k: x.shape[0] / v for k, v in median.items()}
    return {
        "case": name,
        "batch": x.shape[0],
        "n_steps": n_steps,
        "median_s": median,
        "samples_per_s": samples_per_s,
        "speedup_vs_captum_all_steps": median["captum_all_steps"] / median["xdistill_all_steps"],
        "speedup_vs_captum_one_step_per_chunk": median["captum_one_step_per_chunk"]
        / median["xdistill_one_step_per_chunk"],
        "default_over_bound": median["xdistill_default_chunk"] / median["n_steps_x_fwd_bwd"],
        "one_step_per_chunk_over_bound": median["xdistill_one_step_per_chunk"] / median["n_steps_x_fwd_bwd"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    cases = [
        ("fcn1d(w=0.5) on (32,1,150)", build_model("fcn1d", 1, 2, width=0.5), torch.randn(32, 1, 150), 50),
        ("resnet20 on (16,3,32,32)", build_model("resnet20", 3, 10), torch.randn(16, 3, 32, 32), 32),
    ]
    results = []
    for name, model, x, steps in cases:
        result = bench_case(name, model.to(device), x.to(device), steps, args.repeats)
        results.append(result)
        print(f"\n{name}, n_steps={steps}")
        for key, value in result["median_s"].items():
            print(f"  {key:<30}{value * 1e3:9.1f} ms")
        for key in (
            "speedup_vs_captum_all_steps",
            "speedup_vs_captum_one_step_per_chunk",
            "default_over_bound",
            "one_step_per_chunk_over_bound",
        ):
            print(f"  {key:<38}{result[key]:.2f}x")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
