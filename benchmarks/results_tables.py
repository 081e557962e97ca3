"""RESULTS.md's generated sections, from the per-seed summaries committed under ``results/``.

A study's summary (``results/<edition>/<study>.json``: per student, per metric, one value per seed, plus how it
was run) is what ``benchmarks/reproduce.py`` writes beside its run root. This script turns each into a Markdown
block — mean ± std per student, and for every student against the study's baseline the paired difference with
its 95% confidence interval, the two-sided paired t-test p, Holm's adjustment over the study's comparisons, and,
where a difference is not significant after the adjustment, the smallest difference the study could have
detected (80% power, α = 0.05) — and writes it between the markers of that study in RESULTS.md:

    <!-- generated from results/fourth/subdistill-0-2-6.json: do not edit; benchmarks/results_tables.py -->
    ...
    <!-- end of generated block -->

Run ``.venv/bin/python benchmarks/results_tables.py`` to rewrite the blocks, ``--check`` to fail (exit 1) when
RESULTS.md differs from what the committed summaries give (``tests/test_results_tables.py`` does).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "RESULTS.md"
BLOCK = re.compile(
    r"(<!-- generated from (?P<source>\S+): do not edit; benchmarks/results_tables.py -->\n)"
    r"(?P<body>.*?)"
    r"(<!-- end of generated block -->)",
    re.S,
)
#: the metrics compared with the baseline, with their labels (a study's summary may have fewer)
TESTED = {
    "student_accuracy_all": "accuracy, whole test split",
    "agreement": "agreement with the teacher",
    "saliency_spearman": "alignment, own explainer",
    "saliency_spearman@integrated_gradients#2": "alignment, IG 32 steps",
    "saliency_spearman@integrated_gradients": "alignment, IG 32 steps",
    "saliency_spearman@saliency": "alignment, gradient saliency",
    "topk_focus": "top-k focus",
    "flip_auc_student_teacher_order": "deletion AUC, teacher's order",
}
ALPHA = 0.05


def t_quantile(probability: float, dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(probability, dof))


def paired(a: list[float], b: list[float]) -> dict[str, float]:
    """``a - b`` over seeds: mean, 95% CI, two-sided paired t-test p, smallest detectable difference."""
    from scipy.stats import ttest_rel

    differences = [x - y for x, y in zip(a, b)]
    n = len(differences)
    mean = statistics.fmean(differences)
    spread = statistics.stdev(differences) if n > 1 else float("nan")
    error = spread / math.sqrt(n)
    half = t_quantile(1 - ALPHA / 2, n - 1) * error
    detectable = (t_quantile(1 - ALPHA / 2, n - 1) + t_quantile(0.8, n - 1)) * error
    p = float(ttest_rel(a, b).pvalue) if spread > 0 else (1.0 if mean == 0 else 0.0)
    return {"mean": mean, "low": mean - half, "high": mean + half, "p": p, "detectable": detectable, "n": n}


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment: the adjusted p of each test, in the input's order."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def _fmt(values: list[float]) -> str:
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def render(summary: dict[str, Any]) -> str:
    """The Markdown block of one study's summary."""
    students, baseline = summary["students"], summary["baseline"]
    metrics = [m for m in TESTED if m in students[baseline]]
    lines = [
        f"Seeds {summary['seeds']} (n = {len(summary['seeds'])}); mean ± std over seeds; teacher accuracy on the "
        f"{summary.get('teacher_split', 'whole test split')} {_fmt(summary['teacher_accuracy_all'])}.",
        "",
        "| student | " + " | ".join(TESTED[m] for m in metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for name, row in students.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(row[m]) for m in metrics) + " |")
    comparisons = [(name, m) for name in students if name != baseline for m in metrics]
    tests = [paired(students[name][m], students[baseline][m]) for name, m in comparisons]
    adjusted = holm([t["p"] for t in tests])
    lines += [
        "",
        f"Against `{baseline}`, paired over seeds: the difference (student − {baseline}) with its 95% confidence "
        f"interval, the t-test's p, and Holm's adjustment over the study's {len(tests)} comparisons. A difference "
        "not significant after the adjustment reads *not distinguishable at n seeds*; the last column is the "
        "smallest difference this study could have detected (80% power, α = 0.05, two-sided).",
        "",
        "| student | metric | difference [95% CI] | p | p, Holm | verdict | detectable |",
        "|---|---|---|---|---|---|---|",
    ]
    for (name, metric), test, p_holm in zip(comparisons, tests, adjusted):
        if p_holm < ALPHA:
            verdict = "higher" if test["mean"] > 0 else "lower"
        else:
            verdict = f"not distinguishable at {test['n']} seeds"
        lines.append(
            f"| {name} | {TESTED[metric]} | {test['mean']:+.3f} [{test['low']:+.3f}, {test['high']:+.3f}] | "
            f"{_p(test['p'])} | {_p(p_holm)} | {verdict} | {test['detectable']:.3f} |"
        )
    lines += halves(summary, comparisons)
    for name in students:
        if name != baseline and "student_accuracy_all" in metrics:
            below = sum(
                x < y
                for x, y in zip(students[name]["student_accuracy_all"], students[baseline]["student_accuracy_all"])
            )
            lines += [
                "",
                f"Seed by seed: `{name}` below `{baseline}` in accuracy on {below} of {len(summary['seeds'])} seeds.",
            ]
    return "\n".join(lines) + "\n"


def halves(summary: dict[str, Any], comparisons: list[tuple[str, str]]) -> list[str]:
    """With 10 seeds or more: each difference on the first and the second half of the seeds, as two independent
    runs of the study would give it — the between-run spread beside the within-run p."""
    seeds = summary["seeds"]
    if len(seeds) < 10:
        return []
    half = len(seeds) // 2
    students, baseline = summary["students"], summary["baseline"]
    first, second = seeds[:half], seeds[half:]
    lines = [
        "",
        f"Between runs: each difference on seeds {first[0]}–{first[-1]} and on seeds {second[0]}–{second[-1]} "
        "alone, as two independent runs of the study would measure it (mean [95% CI], p).",
        "",
        f"| student | metric | seeds {first[0]}–{first[-1]} | seeds {second[0]}–{second[-1]} |",
        "|---|---|---|---|",
    ]
    for name, metric in comparisons:
        cells = []
        for part in (slice(0, half), slice(half, None)):
            test = paired(students[name][metric][part], students[baseline][metric][part])
            cells.append(f"{test['mean']:+.3f} [{test['low']:+.3f}, {test['high']:+.3f}], p {_p(test['p'])}")
        lines.append(f"| {name} | {TESTED[metric]} | {cells[0]} | {cells[1]} |")
    return lines


def rewrite(text: str) -> str:
    """``text`` with every generated block rendered again from its source."""

    def block(match: re.Match) -> str:
        summary = json.loads((ROOT / match["source"]).read_text())
        return match.group(1) + render(summary) + match.group(4)

    return BLOCK.sub(block, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when RESULTS.md differs from its sources")
    args = parser.parse_args()
    text = RESULTS.read_text()
    fresh = rewrite(text)
    if args.check:
        if fresh != text:
            print("RESULTS.md differs from what results/ gives: run benchmarks/results_tables.py", file=sys.stderr)
            return 1
        print(f"RESULTS.md: {len(BLOCK.findall(text))} generated block(s) up to date")
        return 0
    RESULTS.write_text(fresh)
    print(f"RESULTS.md: {len(BLOCK.findall(text))} generated block(s) rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
