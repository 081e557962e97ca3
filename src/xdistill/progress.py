"""One progress mechanism: rich bars on stderr (the style of Lightning's training bar) for the work
Lightning does not drive — attribution-store precompute, evaluation, the plain training loop.

``with progress_bar("evaluate kd", total) as bar: bar.advance(n)``; library code deep inside a stage
(``part_importances``, the deletion curves) calls :func:`advance`, which moves the innermost open bar
and does nothing when none is open, so functions keep their signatures.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Iterator
from typing import Any

_ACTIVE: contextvars.ContextVar[Bar | None] = contextvars.ContextVar("xdistill_progress", default=None)


class Bar:
    """A handle on one bar (a no-op when disabled)."""

    def __init__(self, progress: Any, task: Any) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: float = 1, **fields: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=n, **fields)


@contextlib.contextmanager
def progress_bar(description: str, total: float, enabled: bool = True) -> Iterator[Bar]:
    """A bar on stderr that stays as a finished line; disabled, it draws nothing but still accepts ``advance``
    (so callers need no branch)."""
    if not enabled:
        bar = Bar(None, None)
        token = _ACTIVE.set(bar)
        try:
            yield bar
        finally:
            _ACTIVE.reset(token)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
    )
    with Progress(*columns, console=Console(file=sys.stderr)) as progress:
        bar = Bar(progress, progress.add_task(description, total=total, note=""))
        token = _ACTIVE.set(bar)
        try:
            yield bar
        finally:
            _ACTIVE.reset(token)


def advance(n: float = 1) -> None:
    """Move the innermost open bar (if any) by ``n``."""
    bar = _ACTIVE.get()
    if bar is not None:
        bar.advance(n)
