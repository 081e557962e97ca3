"""The report's HTML page (``report.html``): self-contained (figures embedded as PNG, the sample explorer's data
inline), one column that never widens past the window, from the summary that ``figures.json`` holds."""

from __future__ import annotations

import base64
import html
from typing import Any

from .decision import in_words
from .shortcut import MEANING, shortcut_table
from .tables import (
    COLUMNS,
    explainer_table,
    has_deletion_auc,
    settings_line,
    short_name,
    table_rows,
    teacher_accuracy,
    verdict_lines,
)

esc = html.escape


def html_table(header: list[str], rows: list[list[str]], columns: list[int]) -> str:
    """A table of the given columns, in a box that scrolls on a narrow screen (the page itself never widens)."""
    table = "<table><thead><tr>" + "".join(f"<th>{esc(header[i])}</th>" for i in columns) + "</tr></thead><tbody>"
    table += "".join("<tr>" + "".join(_td(row[i]) for i in columns) + "</tr>" for row in rows) + "</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def _td(cell: str) -> str:
    """A table cell; cells marked best (a leading NUL) are bold."""
    if cell.startswith("\x00"):
        return f'<td class="best"><strong>{esc(cell[1:])}</strong></td>'
    return f"<td>{esc(cell)}</td>"


STYLE = """\
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.5rem; text-align: right; white-space: nowrap; }
th { white-space: normal; vertical-align: bottom; min-width: 4.5rem; }
.scroll table { margin-bottom: 0.6rem; }
h1, .meta, li, p { overflow-wrap: anywhere; }
th:first-child, td:first-child { text-align: left; }
thead { background: #f0f0f0; }
img { max-width: 100%; }
.meta { color: #555; font-size: 0.9rem; }
td.best { background: #e8f4e8; }
.verdict { background: #f7f7f2; border-left: 4px solid #6a6; padding: 0.2rem 1rem; }
.verdict .headline { font-size: 1.1rem; }
.warning { background: #fff3e0; border-left: 4px solid #e65100; padding: 0.3rem 0.6rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(280px, 1fr)); gap: 0.5rem; }
figure { margin: 0; }
.controls { display: flex; flex-wrap: wrap; gap: 0.8rem; margin: 0.5rem 0; }
.explorer { display: grid; grid-template-columns: minmax(0, 1.15fr) minmax(0, 1fr); gap: 1rem; }
@media (max-width: 800px) { .explorer { grid-template-columns: minmax(0, 1fr); } }
.samples { max-height: 24rem; overflow-y: auto; }
#explorer-table tr { cursor: pointer; }
#explorer-table th, #explorer-table td { min-width: 0; padding: 0.25rem 0.35rem; }
#explorer-table tr.picked { background: #fde9c8; }
.strip-label { font-size: 0.8rem; color: #444; }
.images { display: flex; flex-wrap: wrap; gap: 0.5rem; }
.images canvas { width: 120px; image-rendering: pixelated; }
svg text { fill: #444; }
"""


def _decision(summary: dict[str, Any]) -> str:
    decision = summary.get("decision")
    if not decision:
        return ""
    warnings = "".join(f'<p class="warning"><strong>Warning:</strong> {esc(w)}</p>' for w in decision["warnings"])
    reasons = "".join(f"<li>{esc(r)}</li>" for r in decision["reasons"])
    return (
        f'<div class="verdict" id="decision" data-pick="{esc(decision["pick"] or "")}"><p class="headline">'
        f"<strong>{esc(decision['headline'])}</strong></p><ul>{reasons}</ul>{warnings}"
        f'<p class="meta">{esc(decision["rule"])}</p></div>'
    )


def _results(summary: dict[str, Any], images: dict[str, bytes]) -> list[str]:
    """The verdicts, the results table (accuracy and alignment, then size and speed) and the metric panels."""
    from .decision import DELETION_AUC

    header, rows = table_rows(summary, lambda text: f"\x00{text}")
    split = [label for _, label in COLUMNS].index("params")
    table = html_table(header, rows, list(range(split))) + html_table(header, rows, [0, *range(split, len(header))])
    lines = verdict_lines(summary)
    verdict = (
        f'<p class="meta">{esc(lines[0])}</p><ul>' + "".join(f"<li>{esc(line)}</li>" for line in lines[1:]) + "</ul>"
        if lines
        else ""
    )
    deletion = f'<p class="meta">{esc(DELETION_AUC)}</p>' if has_deletion_auc(summary) else ""
    spread = f"error bars: ± std over {summary['spread']}, as in the table"
    panels = "".join(
        f"<figure>{_img(images, name, name.removeprefix('metric_') + ' per student')}</figure>"
        for name in images
        if name.startswith("metric_")
    )
    return [
        f"<h2>Per metric</h2>{verdict}",
        f'<h2>Results</h2>{table}<p class="meta">Bold: a lead the per-metric verdict tells apart from the runner-up '
        f"(none where it cannot).</p>{deletion}",
        f'<h2>Metrics per student</h2><p class="meta">{esc(spread)}</p><div class="grid">{panels}</div>',
    ]


def _img(images: dict[str, bytes], name: str, alt: str) -> str:
    data = base64.b64encode(images[name]).decode()
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def _optional(summary: dict[str, Any], images: dict[str, bytes]) -> list[str]:
    """Alignment under each explainer, the shortcut test, the saliency examples and each sweep, where present."""
    sections = []
    explainers = explainer_table(summary)
    if explainers is not None:
        header, rows, agreement = explainers
        sections.append(
            '<h2>Alignment under each explainer</h2><p class="meta">The teacher\'s own maps under each pair of '
            f"explainers (per-sample Spearman): {esc('; '.join(agreement))}.</p>"
            + html_table(header, rows, list(range(len(header))))
        )
    shortcut = shortcut_table(summary)
    if shortcut is not None:
        header, rows = shortcut
        sections.append(
            f'<h2 id="shortcut">Shortcut test</h2><p class="meta">{esc(MEANING)}</p>'
            + html_table(header, rows, list(range(len(header))))
        )
    shots = [name for name in images if name.startswith("saliency_")]
    if shots:
        seed = summary.get("examples_seed")
        where = f"seed {seed}'s" if seed is not None else "the"
        sections.append(
            "<h2>Teacher vs student saliency on held-out samples</h2>"
            f'<p class="meta">The first {len(shots)} test samples (by their order in the test split, not chosen) with '
            f"{where} models, under {esc(in_words(summary['evaluation']['explainer']))}; the explorer below shows "
            f'any sample.</p><div class="grid">{"".join(f"<figure>{_img(images, n, n)}</figure>" for n in shots)}</div>'
        )
    for base, sweep in summary["sweeps"].items():
        sections.append(
            f"<h2>Alignment vs {esc(sweep['option'])} ({esc(base)})</h2>" + _img(images, "sweep_" + base, "sweep curve")
        )
    return sections


def html_page(summary: dict[str, Any], images: dict[str, bytes], explorer: dict[str, Any] | None = None) -> str:
    """The whole page: the decision first, then what was measured and how, the results and the optional sections."""
    sections = _results(summary, images) + _optional(summary, images)
    if explorer is not None:
        from .explorer import embed

        sections.append(embed(explorer))
    title = f"{esc(summary['recipe'])} — {esc(short_name(summary['dataset']))}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — xdistill report</title>
<style>
{STYLE}</style></head><body>
<h1>{title}</h1>
{_decision(summary)}
<p class="meta">Generated {esc(summary["generated"])}. Data set {esc(summary["dataset"])}.
Teacher {esc(summary["teacher"]["model"])}, accuracy {esc(teacher_accuracy(summary))}. {esc(settings_line(summary))}
{esc(summary["splits"])}</p>
{"".join(sections)}
</body></html>
"""
