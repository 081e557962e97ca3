"""Small file helpers shared by the store, the study runner and checkpoints.

Every file xdistill reads back is written atomically and checked on read: JSON objects carry a content
hash (``_sha256``) over their canonical form, safetensors files one over their tensors (checkpoint.py), npz
archives their zip CRC-32s. A file that is truncated, zeroed or has a flipped byte is refused with
:class:`DamagedFileError`, one line naming the file and how to rebuild it — never used silently.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import IO, Any

from .errors import UserError

#: how a file being written is named until it is complete: ``<name>.<pid>.part``
PARTIAL_SUFFIX = ".part"


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write bytes atomically (a ``.part`` file renamed into place), creating the folder.

    The partial file is named by the writing process, so several processes (DDP ranks creating the
    same store) writing one file never rename each other's half-written copy. A write that fails (a full disk,
    Ctrl-C) removes its partial file and raises again; the file it would have replaced is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except BaseException:  # a full disk, a Ctrl-C: no half-written file is left behind, the old one stays
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise


def _writer_alive(partial: Path) -> bool:
    """Whether the process named in a partial file's name (``<name>.<pid>.part``) is alive on this machine and is
    not this one (this process writes nothing while it looks for stale partial files)."""
    pid = partial.name.removesuffix(PARTIAL_SUFFIX).rsplit(".", 1)[-1]
    if not pid.isdigit() or not 0 < int(pid) < 2**31 or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists: another user's
        pass
    return True


def remove_stale_partials(root: str | Path) -> list[Path]:
    """Remove the ``*.part`` files below ``root`` that an interrupted or failed write left behind; return them.

    Call it only while holding ``root``'s :class:`DirectoryLock` (no other run writes there then). A partial file
    whose name carries the pid of another live process (a rank of this run, ``xdistill report``) is left alone."""
    removed = []
    for partial in sorted(Path(root).rglob(f"*{PARTIAL_SUFFIX}")):
        if not partial.is_file() or _writer_alive(partial):
            continue
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
            removed.append(partial)
    return removed


HASH_KEY = "_sha256"


def sha256_of(data: bytes) -> str:
    """The SHA-256 of some bytes, as hex: how a file is checked against a hash recorded in another file."""
    return hashlib.sha256(data).hexdigest()


class DamagedFileError(UserError, ValueError):
    """A file xdistill wrote earlier that cannot be trusted (truncated, zeroed, bytes changed): the message names
    the file and the command or step that rebuilds it; ``why`` says what is wrong with it, ``path`` which file
    (when known)."""

    def __init__(self, message: str, why: str = "", path: str | Path | None = None) -> None:
        super().__init__(message)
        self.why = why or message
        self.path = Path(path) if path is not None else None


def damaged(path: str | Path, why: str, fix: str) -> DamagedFileError:
    return DamagedFileError(f"{path} is damaged ({why}); {fix}", why, path)


def _canonical_hash(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def write_json(path: str | Path, data: Any, sort_keys: bool = False) -> None:
    """Write JSON atomically (see ``atomic_write``); an object gets its content hash under ``_sha256``."""
    if isinstance(data, dict):
        plain = json.loads(json.dumps(data, default=str))  # as it will read back (tuples -> lists, paths -> str)
        plain.pop(HASH_KEY, None)
        data = {**plain, HASH_KEY: _canonical_hash(plain)}
    atomic_write(path, json.dumps(data, indent=2, sort_keys=sort_keys, default=str).encode())


def read_json(path: str | Path, fix: str = "delete it and run the same command again") -> Any:
    """JSON written by :func:`write_json`, its content hash checked (and dropped); a damaged file is a
    :class:`DamagedFileError` naming ``path`` and ``fix``. Files without a hash (older runs) are read as they are."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise
    except (ValueError, UnicodeDecodeError, OSError) as error:
        raise damaged(path, f"not readable JSON: {str(error).splitlines()[0]}", fix) from None
    if isinstance(data, dict) and HASH_KEY in data:
        stored = data.pop(HASH_KEY)
        if stored != _canonical_hash(data):
            raise damaged(path, "its content does not match the hash written with it", fix)
    return data


def write_npz(path: str | Path, arrays: dict[str, Any]) -> None:
    """Numpy arrays as an .npz archive, atomically (each member carries its zip CRC-32)."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(path, buffer.getvalue())


def read_npz(path: str | Path, fix: str = "delete it and run the same command again") -> dict[str, Any]:
    """Every array of an .npz archive, read in full so every member's CRC-32 is checked; never unpickles."""
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise damaged(path, f"not a readable npz archive: {str(error).splitlines()[0]}", fix) from None


class LockedError(UserError, RuntimeError):
    """Another live process holds the lock on a run directory or attribution store."""


PID_WIDTH = 12  # the lock file holds the holder's pid, padded to this width


def _lock_holder(handle: IO[str], wait_seconds: float = 1.0) -> str:
    """The pid written in a held lock file; a holder that has just taken the lock is given a moment to write it."""
    deadline = time.monotonic() + wait_seconds
    while True:
        holder = os.pread(handle.fileno(), PID_WIDTH, 0).decode(errors="replace").strip()
        if holder or time.monotonic() >= deadline:
            return holder or "unknown"
        time.sleep(0.02)


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
        # read-write without O_APPEND, under which Linux's pwrite ignores the offset and appends
        handle = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644), "r+")
        deadline = time.monotonic() + self.wait_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                holder = _lock_holder(handle)
                handle.close()
                raise LockedError(
                    f"{self.what} {self.path.parent} is in use by another xdistill process (pid {holder}); "
                    "wait for it to finish or stop it, or choose another directory"
                ) from None
        # one fixed-width write in place: a reader never sees the file empty or half old, half new
        os.pwrite(handle.fileno(), f"{os.getpid():<{PID_WIDTH}}".encode(), 0)
        os.ftruncate(handle.fileno(), PID_WIDTH)
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
