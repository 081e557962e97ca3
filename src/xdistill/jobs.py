"""Run a study's seeds side by side, one process each (``xdistill run --jobs N``).

Each seed is an ordinary ``xdistill run --seed S`` in its own run directory (``seed-S/``), so a seed run side by
side gives the numbers it gives alone (a run uses ``hardware.threads``, 1 by default) and an interrupted seed
resumes like any run. The parent prints a line when a seed starts and ends; a failed seed's last error line is
shown and the others finish.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class SeedFailure:
    seed: int
    returncode: int
    message: str


def _last_error(stream) -> str:
    stream.seek(0)
    lines = [line.strip() for line in stream.read().decode(errors="replace").splitlines() if line.strip()]
    errors = [line.removeprefix("xdistill: error: ") for line in lines if line.startswith("xdistill: ")]
    return (errors or lines or ["(no message)"])[-1]


def run_seeds(command: Sequence[str], seeds: Sequence[int], jobs: int, poll: float = 0.2) -> list[SeedFailure]:
    """Run ``command + ["--seed", S]`` for every seed, at most ``jobs`` at once; the failures, in seed order.

    Ctrl-C stops every running seed (each resumes when the same command runs again) and is raised again."""
    pending, failures = list(seeds), []
    running: dict[int, tuple[subprocess.Popen, Any, float]] = {}  # seed: (process, its stderr, when it started)
    try:
        while pending or running:
            while pending and len(running) < jobs:
                seed = pending.pop(0)
                log = tempfile.TemporaryFile()
                process = subprocess.Popen([*command, "--seed", str(seed)], stdout=subprocess.DEVNULL, stderr=log)
                running[seed] = (process, log, time.monotonic())
                print(f"seed {seed}: started", flush=True)
            for seed, (process, log, started) in list(running.items()):
                if process.poll() is None:
                    continue
                del running[seed]
                seconds = time.monotonic() - started
                if process.returncode == 0:
                    print(f"seed {seed}: done in {seconds:.0f} s", flush=True)
                else:
                    failures.append(SeedFailure(seed, process.returncode, _last_error(log)))
                    print(f"seed {seed}: failed after {seconds:.0f} s: {failures[-1].message}", flush=True)
                log.close()
            time.sleep(poll)
    except KeyboardInterrupt:
        for process, _, _ in running.values():
            process.send_signal(2)  # SIGINT: each seed stops as after Ctrl-C (resumable)
        for process, _, _ in running.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        raise
    return sorted(failures, key=lambda f: f.seed)


def xdistill_command(arguments: Sequence[str]) -> list[str]:
    """This interpreter running the xdistill command line with ``arguments``."""
    return [sys.executable, "-m", "xdistill", *arguments]
