"""Start-up time of ``xdistill list`` against ``python -c "import torch"``, and peak memory of a whole
``xdistill run`` (teacher, an alone and a TSD student with a teacher bank, evaluation, report) as the
training set grows from 500 to 8,000 series of 150 steps. Each command runs in a fresh process
(interleaved repetitions, medians); peak memory is the child's maximum resident set size.

    .venv/bin/python benchmarks/startup_memory.py [--repeats 5] [--sizes 500 2000 8000]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPE = """name: memory-{n}
seed: 0
dataset:
  name: synthetic_series
  options: {{n_train: {n}, n_test: 300, length: 150}}
teacher:
  model: fcn1d
  options: {{width: 0.5}}
  train: {{steps: 200}}
training: {{steps: 200}}
students:
  - {{name: alone, model: fcn1d, options: {{width: 0.125}}, methods: [ce]}}
  - name: tsd
    model: fcn1d
    options: {{width: 0.125}}
    methods: [ce, {{name: tsd, weight: 1.0, perturbations: 10, window: 10, bank: 20}}]
evaluation:
  explainer: occlusion
  explainer_options: {{window: 10, stride: 10}}
  parts: window
  part_options: {{size: 10}}
  k: 3
  examples: 3
"""


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def peak_rss_mb(command: list[str]) -> float:
    """Peak resident memory of one child process (MB), measured by a wrapper so children do not mix."""
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", probe, *command], check=True, capture_output=True, text=True)
    return int(out.stdout.strip()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 8000])
    args = parser.parse_args()
    xdistill = str(Path(sys.executable).with_name("xdistill"))
    runs = {
        "import torch": [sys.executable, "-c", "import torch"],
        "xdistill list": [xdistill, "list"],
        "xdistill --help": [xdistill, "--help"],
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, command in runs.items():
            times[name].append(wall(command))
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"start-up, median of {args.repeats} interleaved fresh processes")
    print("| command | seconds | ratio |")
    print("|---|---|---|")
    for name, value in median.items():
        print(f"| `{name}` | {value:.2f} | {value / median['import torch']:.2f}x `import torch` |")
    print()
    print("peak resident memory of `xdistill run` (teacher + alone + TSD with a bank of 20, 200 steps each)")
    print("| training series | peak RSS (MB) | ratio |")
    print("|---|---|---|")
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            recipe = Path(tmp) / f"memory_{n}.yaml"
            recipe.write_text(RECIPE.format(n=n))
            peaks[n] = peak_rss_mb([xdistill, "run", str(recipe), "--out", str(Path(tmp) / f"run_{n}")])
            print(f"| {n} | {peaks[n]:.0f} | {peaks[n] / peaks[args.sizes[0]]:.2f}x N={args.sizes[0]} |")


if __name__ == "__main__":
    main()
