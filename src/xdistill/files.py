"""Small file helpers shared by the store, the study runner and checkpoints."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import IO, Any

from .errors import UserError


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write bytes atomically (a ``.part`` file renamed into place), creating the folder.

    The partial file is named by the writing process, so several processes (DDP ranks creating the
    same store) writing one file never rename each other's half-written copy."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, path)


def write_json(path: str | Path, data: Any, sort_keys: bool = False) -> None:
    """Write JSON atomically (see ``atomic_write``)."""
    atomic_write(path, json.dumps(data, indent=2, sort_keys=sort_keys, default=str).encode())


class LockedError(UserError, RuntimeError):
    """Another live process holds the lock on a run directory or attribution store."""


class DirectoryLock:
    """An exclusive ``fcntl.flock`` on ``directory/.lock``, held while a process works there.

    The kernel releases the lock when its process dies, so a lock file left by a killed run is
    stale and is taken over silently; a live holder is named (pid) in the refusal. Re-entrant
    for the object that holds it. ``wait_seconds`` > 0 retries that long before refusing: for
    short critical sections that several processes (DDP ranks) enter at once.
    """

    def __init__(self, directory: str | Path, what: str, wait_seconds: float = 0.0) -> None:
        self.path, self.what = Path(directory) / ".lock", what
        self.wait_seconds = wait_seconds
        self._handle: IO[str] | None = None
        self._depth = 0

    def acquire(self) -> DirectoryLock:
        import fcntl

        if self._depth:
            self._depth += 1
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        deadline = time.monotonic() + self.wait_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                handle.close()
                raise LockedError(
                    f"{self.what} {self.path.parent} is in use by another xdistill process (pid {holder}); "
                    "wait for it to finish or stop it, or choose another directory"
                ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle, self._depth = handle, 1
        return self

    def release(self) -> None:
        import fcntl

        if not self._depth:
            return
        self._depth -= 1
        if self._depth == 0 and self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
