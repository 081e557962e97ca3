"""Run the confirmatory studies of ``results/plan.yaml``: every planned claim's study at its planned seeds (fresh
ones, from ``rules.first_seed``), cheapest first, and copy each finished summary to ``results/fifth/``.

    nohup .venv/bin/python benchmarks/confirm.py --lane 0 --lanes 2 > runs/fifth/lane-0.log 2>&1 &
    nohup .venv/bin/python benchmarks/confirm.py --lane 1 --lanes 2 > runs/fifth/lane-1.log 2>&1 &

Two lanes split the studies (alternately, in order of cost) so two run at a time, one thread each, on a 2-core
machine. A study shared by several claims runs once, at the largest seed count among them. ``reproduce.py`` skips
finished seeds and every fit resumes exactly from its checkpoint, so a lane killed at a session's end continues
where it stopped when started again. ``--dry-run`` prints the commands.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PLAN = ROOT / "results" / "plan.yaml"


def studies(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per run (``study.run``, else the summary's name) that a planned claim needs: its reproduce.py options,
    the summaries it writes, seeds (the most any of its claims needs) and CPU-hours, cheapest first."""
    first = int(plan["rules"]["first_seed"])
    found: dict[str, dict[str, Any]] = {}
    for claim in plan["claims"]:
        if claim.get("status") != "planned":
            continue
        study = claim["study"]
        name = study.get("run", study["summary"])
        entry = found.setdefault(
            name, {"run": name, "options": study["reproduce"], "seeds": 0, "hours": 0.0, "summaries": []}
        )
        if entry["options"] != study["reproduce"]:
            raise SystemExit(f"{claim['id']}: run {name} has other reproduce.py options in another claim")
        entry["seeds"] = max(entry["seeds"], int(claim["seeds"]))
        entry["hours"] = max(entry["hours"], float(claim["budget"]))
        if study["summary"] not in entry["summaries"]:
            entry["summaries"].append(study["summary"])
        entry.setdefault("claims", []).append(claim["id"])
    out = sorted(found.values(), key=lambda e: e["hours"])
    for entry in out:
        entry["seed_list"] = list(range(first, first + entry["seeds"]))
    return out


def command(entry: dict[str, Any], root: Path) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "benchmarks" / "reproduce.py"),
        *shlex.split(entry["options"]),
        "--seeds",
        *map(str, entry["seed_list"]),
        "--threads",
        "1",
        "--root",
        str(root),
        "--results",
        str(root / "RESULTS.md"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lane", type=int, default=0)
    parser.add_argument("--lanes", type=int, default=1)
    parser.add_argument("--root", default="runs/fifth")
    parser.add_argument("--results", default=str(ROOT / "results" / "fifth"))
    parser.add_argument("--only", nargs="*", default=None, help="these runs only (study.run, else the summary name)")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    plan = yaml.safe_load(PLAN.read_text())
    root, results = Path(args.root), Path(args.results)
    chosen = [e for i, e in enumerate(studies(plan)) if i % args.lanes == args.lane]
    if args.only is not None:
        chosen = [e for e in chosen if e["run"] in args.only]
    for entry in chosen:
        where = root / entry["run"]
        run = command(entry, where)
        print(
            f"== {entry['run']} ({', '.join(entry['claims'])}): {entry['seeds']} seeds, "
            f"about {entry['hours']} CPU-hours\n{shlex.join(run)}",
            flush=True,
        )
        if args.dry_run:
            continue
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(run, check=True, cwd=ROOT)
        results.mkdir(parents=True, exist_ok=True)
        for summary in entry["summaries"]:
            shutil.copyfile(where / f"{summary}.json", results / f"{summary}.json")
            print(f"== {summary}: summary in {results / (summary + '.json')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
