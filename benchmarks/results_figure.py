"""``docs/summary.png`` and the points it plots (``docs/summary.json``), from the committed summaries alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def figure_summaries(root: Path) -> dict[str, dict[str, Any]]:
    """The summaries the figure draws: the fourth edition's (the pilot: every arm of each study), in summary.py's
    order of studies."""
    from summary import STUDIES

    files = {path.stem: path for path in sorted((root / "results" / "fourth").glob("*.json"))}
    return {name: json.loads(files[name].read_text()) for name in STUDIES if name in files}


def _plain(value: Any) -> Any:
    """JSON-safe: NaN as null, tuples as lists."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def figure_data(root: Path) -> str:
    """``docs/summary.json``: the points ``docs/summary.png`` plots, as the committed summaries give them."""
    from summary import plotted_points

    return json.dumps(_plain(plotted_points(figure_summaries(root))), indent=1) + "\n"


def draw(root: Path) -> list[Path]:
    """Draw ``docs/summary.png`` (per study, accuracy against alignment) and write the points it plots."""
    from summary import figure

    path, data = root / "docs" / "summary.png", root / "docs" / "summary.json"
    figure(figure_summaries(root), path)
    data.write_text(figure_data(root))
    return [path, data]
