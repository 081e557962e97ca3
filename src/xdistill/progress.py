"""One progress mechanism: rich bars on stderr (the style of Lightning's training bar) for the work
Lightning does not drive — attribution-store precompute, evaluation, the plain training loop.

``with progress_bar("evaluate kd", total) as bar: bar.advance(n)``; library code deep inside a stage
(``part_importances``, the deletion curves) calls :func:`advance`, which moves the innermost open bar
and does nothing when none is open, so functions keep their signatures.

When stderr is not a terminal (a log file, a batch job), a bar would only show up finished; instead a plain
line is printed at every tenth of the work and at least every :data:`LINE_SECONDS` seconds (:class:`Pacer`).
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import time
from collections.abc import Iterator
from typing import Any

#: the longest silence of progress lines when stderr is not a terminal
LINE_SECONDS = 30.0
#: the shortest gap between two lines for a tenth of the work (short work prints few lines)
TENTH_SECONDS = 5.0


def on_terminal() -> bool:
    """Whether stderr is a terminal (bars redraw in place) rather than a file or a pipe (lines are printed)."""
    return sys.stderr.isatty()


class Pacer:
    """When a progress line is due: ``seconds`` after the last line, or when the work crosses another tenth at least
    :data:`TENTH_SECONDS` after it."""

    def __init__(self, total: float, seconds: float = LINE_SECONDS) -> None:
        self.total, self.seconds = max(float(total), 1e-12), seconds
        self.started = self._last = time.monotonic()
        self._tenth = 0

    def due(self, done: float) -> bool:
        now, tenth = time.monotonic(), int(10 * done / self.total)
        quiet = now - self._last
        if (tenth > self._tenth and quiet >= TENTH_SECONDS) or quiet >= self.seconds:
            self._tenth, self._last = max(tenth, self._tenth), now
            return True
        return False

    def line(self, done: float, what: str) -> str:
        """``[12:00:01] what: 40% (40/100), 12 s, about 18 s left``."""
        elapsed = time.monotonic() - self.started
        fraction = min(1.0, done / self.total)
        left = f", about {elapsed / fraction - elapsed:.0f} s left" if 0 < fraction < 1 else ""
        stamp = time.strftime("%H:%M:%S")
        return f"[{stamp}] {what}: {100 * fraction:.0f}% ({done:g}/{self.total:g}), {elapsed:.0f} s{left}"


_ACTIVE: contextvars.ContextVar[Bar | None] = contextvars.ContextVar("xdistill_progress", default=None)


class Bar:
    """A handle on one bar (a no-op when disabled)."""

    def __init__(self, progress: Any, task: Any) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: float = 1, **fields: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=n, **fields)


class LineBar(Bar):
    """A bar for a file: a line on stderr when :class:`Pacer` says one is due."""

    def __init__(self, description: str, total: float) -> None:
        super().__init__(None, None)
        self.description, self.done, self.pacer = description, 0.0, Pacer(total)

    def advance(self, n: float = 1, **fields: Any) -> None:
        self.done += n
        if self.pacer.due(self.done):
            print(self.pacer.line(self.done, self.description), file=sys.stderr, flush=True)


@contextlib.contextmanager
def progress_bar(description: str, total: float, enabled: bool = True) -> Iterator[Bar]:
    """A bar on stderr that stays as a finished line; disabled, it draws nothing but still accepts ``advance``
    (so callers need no branch); stderr not a terminal, it prints paced lines instead."""
    if not enabled or not on_terminal():
        bar = LineBar(description, total) if enabled else Bar(None, None)
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
        rich_bar = Bar(progress, progress.add_task(description, total=total, note=""))
        token = _ACTIVE.set(rich_bar)
        try:
            yield rich_bar
        finally:
            _ACTIVE.reset(token)


def advance(n: float = 1) -> None:
    """Move the innermost open bar (if any) by ``n``."""
    bar = _ACTIVE.get()
    if bar is not None:
        bar.advance(n)
