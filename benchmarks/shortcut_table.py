"""The shortcut recipes as shipped, one seed each: accuracy where the cue agrees, lies or is gone, and how often each
student follows the lying cue, gathered from the runs' evaluation JSONs into ``results/shortcut-recipes.json`` and
printed as the Markdown table of docs/studies.md.

    for r in series images text coloured_fashion_mnist; do
        .venv/bin/xdistill run recipes/shortcut_$r.yaml --out runs/shortcut/$r; done
    .venv/bin/python benchmarks/shortcut_table.py runs/shortcut/{series,images,text,coloured_fashion_mnist}
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "shortcut-recipes.json"
#: (evaluation key, column)
COLUMNS = [
    ("student_accuracy_all", "iid (the cue as in training)"),
    ("student_accuracy_flipped", "cue lies"),
    ("student_accuracy_none", "no cue"),
    ("cue_reliance", "follows the lying cue"),
]


def gather(run: Path) -> dict[str, Any]:
    """One run's recipe name, wall time, and per-model figures (the teacher first)."""
    recipe = json.loads((run / "recipe.json").read_text())
    rows: dict[str, dict[str, float]] = {}
    for path in sorted((run / "evaluation").glob("*.json")):
        if path.stem.startswith("teacher"):
            continue
        result = json.loads(path.read_text())
        rows.setdefault("teacher", {k: result[k.replace("student_", "teacher_")] for k, _ in COLUMNS[:3]})
        rows["teacher"]["cue_reliance"] = result["teacher_cue_reliance"]
        rows[path.stem] = {k: result[k] for k, _ in COLUMNS}
    order = ["teacher"] + [s["name"] for s in recipe["students"] if s["name"] in rows]
    return {"recipe": recipe["name"], "models": {name: rows[name] for name in order}}


def markdown(runs: list[dict[str, Any]]) -> str:
    lines = []
    for run in runs:
        header = ["model"] + [label for _, label in COLUMNS]
        lines += [f"**{run['recipe']}**", "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        for name, row in run["models"].items():
            lines.append(f"| {name} | " + " | ".join(f"{row[k]:.3f}" for k, _ in COLUMNS) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories of the shortcut recipes")
    args = parser.parse_args()
    runs = [gather(run) for run in args.runs]
    OUT.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    print(markdown(runs))


if __name__ == "__main__":
    main()
