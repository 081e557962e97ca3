"""On-disk attribution store: one memory-mapped ``maps.npy`` plus a JSON manifest.

The manifest records what the maps were computed from (teacher fingerprint, dataset
fingerprint, explainer settings, shape), which chunks are finished and a SHA-256 of each finished
chunk's bytes. Computing is resumable: a killed run keeps every finished chunk, and the next run
computes only the rest. Opening a store checks every finished chunk against its hash: a damaged
chunk (or a truncated or zeroed ``maps.npy``) is named in a warning and computed again, never used.
Opening a store made from another teacher, dataset or explainer is refused.
Nothing is pickled: numpy's .npy format and JSON only.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .files import DamagedFileError, DirectoryLock, read_json, write_json


class StaleStoreError(ValueError):
    """The store on disk was computed from something else."""


class CorruptStoreError(ValueError):
    """A store file that cannot be read (truncated or damaged)."""


def _corrupt(path: Path, error: Exception) -> CorruptStoreError:
    return CorruptStoreError(
        f"{path} is truncated or corrupt ({str(error).splitlines()[0]}); delete the folder "
        f"{path.parent} to recompute the attribution store"
    )


def _load_maps(path: Path, mode: Literal["r+", "r"]) -> Any:
    try:
        return np.load(path, mmap_mode=mode, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise _corrupt(path, error) from None


class AttributionStore:
    """Per-sample attribution maps for a whole dataset, keyed by sample index."""

    def __init__(
        self,
        root: str | Path,
        identity: dict[str, Any],
        n_samples: int,
        sample_shape: tuple[int, ...],
        chunk_size: int = 256,
    ) -> None:
        self.root = Path(root)
        self.identity = json.loads(json.dumps(identity, sort_keys=True))  # normalise tuples -> lists
        self.n_samples, self.sample_shape, self.chunk_size = n_samples, tuple(sample_shape), chunk_size
        self.manifest_path = self.root / "manifest.json"
        self.maps_path = self.root / "maps.npy"
        self._open()

    @property
    def n_chunks(self) -> int:
        return -(-self.n_samples // self.chunk_size)

    def _expected(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "n_samples": self.n_samples,
            "sample_shape": list(self.sample_shape),
            "chunk_size": self.chunk_size,
            "dtype": "float32",
            "format": 1,
        }

    def _open(self) -> None:
        expected = self._expected()
        self.hashes: dict[int, str] = {}
        if self.manifest_path.exists():
            try:
                manifest = read_json(self.manifest_path)
            except DamagedFileError as error:
                raise _corrupt(self.manifest_path, ValueError(error.why)) from None
            found = {k: manifest.get(k) for k in expected}
            if found != expected:
                changed = sorted(k for k in expected if found[k] != expected[k])
                detail = "; ".join(f"{k}: stored {found[k]!r}, now {expected[k]!r}" for k in changed)
                raise StaleStoreError(
                    f"attribution store {self.root} was computed for something else ({detail}); "
                    f"delete the folder or pass overwrite=True to recompute"
                )
            self.hashes = {int(c): h for c, h in manifest.get("hashes", {}).items()}
            self.done: set[int] = set(manifest.get("done", []))
            self._add_rank_progress()
            if not self.maps_path.exists():
                self.done = set()
            else:
                self._verify()
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            self.done = set()
        if not self.maps_path.exists():
            # DDP ranks open one new store at once: the first creates it, the others wait a moment
            with DirectoryLock(self.root, "attribution store", wait_seconds=60):
                if not self.maps_path.exists():  # another process may have created it meanwhile
                    np.lib.format.open_memmap(
                        self.maps_path, mode="w+", dtype=np.float32, shape=(self.n_samples, *self.sample_shape)
                    ).flush()
                    self._save_manifest()

    def _save_manifest(self) -> None:
        extra = {"computed_by": self.computed_by} if getattr(self, "computed_by", None) else {}
        hashes = {str(c): self.hashes[c] for c in sorted(self.done) if c in self.hashes}
        write_json(
            self.manifest_path,
            {**self._expected(), "done": sorted(self.done), "hashes": hashes, **extra},
            sort_keys=True,
        )

    def _bounds(self, chunk: int) -> tuple[int, int]:
        return chunk * self.chunk_size, min(self.n_samples, (chunk + 1) * self.chunk_size)

    def _chunk_hash(self, maps: Any, chunk: int) -> str:
        start, end = self._bounds(chunk)
        return hashlib.sha256(np.ascontiguousarray(maps[start:end]).tobytes()).hexdigest()

    def _verify(self) -> None:
        """Drop from ``done`` every chunk whose bytes no longer match its hash (they are computed again); a
        ``maps.npy`` that cannot be opened (truncated, zeroed header) is made anew and every chunk recomputed."""
        if not self.done:
            return
        log = logging.getLogger("xdistill")
        try:
            maps = _load_maps(self.maps_path, "r")
            if maps.shape != (self.n_samples, *self.sample_shape) or maps.dtype != np.float32:
                raise CorruptStoreError(f"{self.maps_path} holds {maps.dtype} {maps.shape}")
        except CorruptStoreError as error:
            log.warning("%s; computing the whole store again", str(error).split(";")[0])
            self.maps_path.unlink(missing_ok=True)
            self.done, self.hashes = set(), {}
            return
        damaged = sorted(c for c in self.done if c in self.hashes and self._chunk_hash(maps, c) != self.hashes[c])
        del maps
        if damaged:
            log.warning(
                "%s: chunk(s) %s do not match their hash (damaged); computing them again", self.maps_path, damaged
            )
            self.done -= set(damaged)

    def _rank_file(self, rank: int) -> Path:
        return self.root / f"done.rank{rank}.json"

    def _rank_files(self) -> dict[str, dict[int, str]]:
        """Chunks finished by each rank of a distributed run, with their hashes (their maps are on disk before the
        file says so); a rank file cut off mid-write is skipped: its chunks are computed again."""
        found = {}
        for path in sorted(self.root.glob("done.rank*.json")):
            try:
                found[path.stem.removeprefix("done.rank")] = {int(c): h for c, h in read_json(path)["hashes"].items()}
            except (DamagedFileError, OSError, KeyError, TypeError, AttributeError):
                continue
        return found

    def _add_rank_progress(self) -> None:
        for hashes in self._rank_files().values():
            self.done |= set(hashes)
            self.hashes.update(hashes)

    def _merge_rank_progress(self) -> None:
        by_rank = self._rank_files()
        self._add_rank_progress()
        self.computed_by = {rank: sorted(hashes) for rank, hashes in by_rank.items()}
        self._save_manifest()
        for path in self.root.glob("done.rank*.json"):
            path.unlink(missing_ok=True)

    @classmethod
    def create(
        cls,
        root: str | Path,
        identity: dict[str, Any],
        n_samples: int,
        sample_shape: tuple[int, ...],
        chunk_size: int = 256,
        overwrite: bool = False,
    ) -> AttributionStore:
        root = Path(root)
        if overwrite:
            with DirectoryLock(root, "attribution store"):  # never delete what another process is filling
                for name in ("manifest.json", "maps.npy"):
                    (root / name).unlink(missing_ok=True)
        return cls(root, identity, n_samples, sample_shape, chunk_size)

    @property
    def complete(self) -> bool:
        return len(self.done) == self.n_chunks

    def compute(
        self,
        explain_chunk: Callable[[int, int], torch.Tensor],
        progress: bool = True,
        rank: int = 0,
        world_size: int = 1,
        barrier: Callable[[], None] | None = None,
    ) -> None:
        """Fill every unfinished chunk with ``explain_chunk(start, end)``; resumable after a kill.

        Single process: the store is locked while computing (a second process is refused).
        Distributed: rank ``r`` of ``world_size`` computes the chunks ``c`` with ``c % world_size == r``
        and records them in its own progress file; after a ``barrier`` rank 0 merges them into
        the manifest, so every chunk is computed once.
        """
        if world_size > 1:
            self._compute_share(explain_chunk, progress, rank, world_size, barrier)
            return
        with DirectoryLock(self.root, "attribution store"):
            self._add_rank_progress()
            self._fill(
                [c for c in range(self.n_chunks) if c not in self.done],
                explain_chunk,
                progress,
                on_chunk=lambda: self._save_manifest(),
            )

    def _compute_share(self, explain_chunk, progress: bool, rank: int, world_size: int, barrier) -> None:
        if barrier is None:
            raise ValueError("a distributed store computation needs a barrier")
        mine = [c for c in range(self.n_chunks) if c not in self.done and c % world_size == rank]

        def record() -> None:
            finished = sorted(set(self.done) & set(mine))
            write_json(self._rank_file(rank), {"hashes": {str(c): self.hashes[c] for c in finished}})

        self._fill(mine, explain_chunk, progress and rank == 0, on_chunk=record)
        barrier()
        if rank == 0:
            self._merge_rank_progress()
        barrier()
        manifest = read_json(self.manifest_path)
        self.done, self.hashes = set(manifest["done"]), {int(c): h for c, h in manifest["hashes"].items()}

    def _fill(self, todo: list[int], explain_chunk, progress: bool, on_chunk: Callable[[], None]) -> None:
        if not todo:
            return
        from .progress import progress_bar

        maps = _load_maps(self.maps_path, "r+")
        try:
            with progress_bar("attribution store", self.n_chunks, progress) as bar:
                bar.advance(len(self.done))
                self._fill_chunks(todo, maps, explain_chunk, on_chunk, bar)
        finally:
            del maps

    def _fill_chunks(self, todo: list[int], maps: Any, explain_chunk, on_chunk: Callable[[], None], bar: Any) -> None:
        """Explain each chunk in ``todo`` into ``maps``, recording it as done (data first, then the record)."""
        for chunk in todo:
            start, end = self._bounds(chunk)
            values = explain_chunk(start, end).detach().float().cpu().numpy()
            if values.shape != (end - start, *self.sample_shape):
                raise ValueError(f"explainer returned shape {values.shape} for samples {start}:{end}")
            maps[start:end] = values
            maps.flush()  # data first, then the record that says it is there
            self.hashes[chunk] = self._chunk_hash(maps, chunk)
            self.done.add(chunk)
            on_chunk()
            bar.advance(1)

    def maps(self) -> np.ndarray:
        """The maps as a read-only memory map (N, *sample_shape)."""
        if not self.complete:
            raise RuntimeError(f"attribution store {self.root} is incomplete ({len(self.done)}/{self.n_chunks} chunks)")
        return _load_maps(self.maps_path, "r")

    def __getitem__(self, index: torch.Tensor | np.ndarray | slice) -> torch.Tensor:
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        return torch.from_numpy(np.ascontiguousarray(self.maps()[index]))
