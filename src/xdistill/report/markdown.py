"""The report's Markdown summary (``report.md``): the decision, the verdicts, the results table and the optional
sections, from the summary that ``figures.json`` holds."""

from __future__ import annotations

from typing import Any

from .decision import DELETION_AUC
from .shortcut import MEANING, shortcut_table
from .tables import cell, explainer_table, has_deletion_auc, settings_line, short_name, table_rows, verdict_lines


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _decision(summary: dict[str, Any]) -> list[str]:
    decision = summary.get("decision")
    if not decision:
        return []
    lines = [f"**Decision: {decision['headline']}**", ""]
    lines += [f"- {reason}" for reason in decision["reasons"]]
    lines += [f"- **Warning:** {warning}" for warning in decision["warnings"]]
    return lines + ["", f"_{decision['rule']}_", ""]


def _optional_sections(summary: dict[str, Any]) -> list[str]:
    """Alignment under each explainer, the shortcut test and each sweep, where the results have them."""
    lines: list[str] = []
    explainers = explainer_table(summary)
    if explainers is not None:
        header, rows, agreement = explainers
        lines += [
            "",
            "## Alignment under each explainer",
            "",
            "The teacher's own maps under each pair of explainers (per-sample Spearman, the context for "
            "what an alignment number can mean): " + "; ".join(agreement) + ".",
            "",
            *_table(header, rows),
        ]
    shortcut = shortcut_table(summary)
    if shortcut is not None:
        lines += ["", "## Shortcut test", "", MEANING, "", *_table(*shortcut)]
    for base, sweep in summary["sweeps"].items():
        header = [sweep["option"], "accuracy", "logit Spearman", "saliency Spearman", "top-k focus"]
        keys = ("student_accuracy", "logit_spearman", "saliency_spearman", "topk_focus")
        rows = [[str(p["value"])] + [cell("a", p[k]) for k in keys] for p in sweep["points"]]
        lines += ["", f"## Sweep of {sweep['option']} ({base})", "", *_table(header, rows)]
    return lines


def markdown(summary: dict[str, Any]) -> str:
    header, rows = table_rows(summary, lambda text: f"**{text}**")
    lines = [f"# {summary['recipe']} — {short_name(summary['dataset'])}", "", *_decision(summary)]
    lines += [
        *[f"- {line}" if i else line for i, line in enumerate(verdict_lines(summary))],
        "",
        f"Generated {summary['generated']}. Data set {summary['dataset']}. Teacher {summary['teacher']['model']}. "
        f"{settings_line(summary)} {summary['splits']}",
        "",
        *_table(header, rows),
        "",
        "Bold: a lead the per-metric verdict tells apart from the runner-up.",
    ]
    if has_deletion_auc(summary):
        lines += ["", DELETION_AUC]
    lines += _optional_sections(summary)
    return "\n".join(lines) + "\n"
