"""Checkpoints that load without executing code: tensors in safetensors, structure in JSON.

A Lightning checkpoint is a nested dict of tensors, numbers, strings, lists and dicts (some
with int keys). ``encode`` moves every tensor into a flat safetensors table and writes the
rest as tagged JSON in the file's metadata; ``decode`` rebuilds it. Anything else (an
arbitrary object that only pickle could store) is refused with a clear error.

Every file written here carries a SHA-256 of its tensors (names, dtypes, shapes, bytes) in its metadata,
checked on every read: a header check would let a flipped bit in the data through.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .files import DamagedFileError

_META_KEY = "xdistill_checkpoint"
_HASH_KEY = "xdistill_sha256"
#: what to do about a damaged file when the caller has nothing more specific to say
RESTORE = "delete it to compute it again, or restore it from a backup"


class CheckpointError(DamagedFileError):
    """A checkpoint or weights file that cannot be read or trusted (truncated, corrupted, not ours)."""


def _open_error(path: str | Path, error: Exception, fix: str = RESTORE) -> CheckpointError:
    why = f"truncated or corrupt: {str(error).splitlines()[0]}"
    return CheckpointError(f"{path} is damaged ({why}); {fix}", why, path)


def tensors_hash(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of named tensors: names, dtypes, shapes and bytes, in name order."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _checked(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str], fix: str) -> None:
    stored = metadata.get(_HASH_KEY)
    if stored is not None and stored != tensors_hash(tensors):
        why = "its tensors do not match the hash written with them"
        raise CheckpointError(f"{path} is damaged ({why}); {fix}", why, path)


def _save(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Tensors to a safetensors file with their hash in the metadata, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    try:
        save_file(tensors, str(partial), metadata={**(metadata or {}), _HASH_KEY: tensors_hash(tensors)})
        os.replace(partial, path)
    except BaseException:  # a full disk or an interrupt: no partial file left behind
        partial.unlink(missing_ok=True)
        raise


def _load(path: str | Path, fix: str, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a safetensors file, its hash checked when it has one."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except FileNotFoundError:
        raise
    except Exception as error:  # safetensors raises its own error types for a damaged header or body
        raise _open_error(path, error, fix) from None
    _checked(path, tensors, metadata, fix)
    return tensors, metadata


def _encode(value: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {
            "__dict__": [[_encode(k, tensors, where), _encode(v, tensors, f"{where}.{k}")] for k, v in value.items()]
        }
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, tensors, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value).removeprefix("torch.")}
    raise TypeError(f"checkpoint entry {where} has type {type(value).__name__}, which cannot be stored without pickle")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__dict__" in value:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in value["__dict__"]}
        if "__tuple__" in value:
            return tuple(_decode(v, tensors) for v in value["__tuple__"])
        if "__dtype__" in value:
            return getattr(torch, value["__dtype__"])
    return value


def save_tree(tree: dict[str, Any], path: str | Path) -> None:
    """Write a nested dict atomically to a safetensors file (tensors + JSON structure + content hash)."""
    tensors: dict[str, torch.Tensor] = {}
    structure = _encode(tree, tensors, "checkpoint")
    _save(tensors, path, {_META_KEY: json.dumps(structure)})


def load_tree(path: str | Path, device: str | torch.device = "cpu", fix: str = RESTORE) -> dict[str, Any]:
    """Read a file written by :func:`save_tree`, its content hash checked; never runs code from the file."""
    tensors, metadata = _load(path, fix, device)
    if _META_KEY not in metadata:
        raise CheckpointError(f"{path} is not an xdistill checkpoint (no {_META_KEY} metadata); {fix}")
    try:
        return _decode(json.loads(metadata[_META_KEY]), tensors)
    except (ValueError, KeyError, TypeError) as error:
        raise _open_error(path, error, fix) from None


def save_weights(model: nn.Module, path: str | Path) -> None:
    """Save a model's state dict as a plain safetensors file (with the hash of its tensors), atomically."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    _save(state, path)


def load_weights(model: nn.Module, path: str | Path, strict: bool = True, fix: str = RESTORE) -> nn.Module:
    """Load a safetensors state dict into ``model`` (no code execution); a file xdistill wrote is checked
    against its content hash (files from elsewhere, without one, load as they are)."""
    state, _ = _load(path, fix)
    model.load_state_dict(state, strict=strict)
    return model


def fingerprint(model: nn.Module) -> str:
    """A hash of a model's parameter and buffer names, shapes and values: 16 hex digits."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def newest_checkpoint(directory: Path) -> tuple[Path, dict[str, Any]] | None:
    """(path, content) of the newest complete checkpoint in ``directory`` (last, then an unrenamed next, then
    previous) whose content matches its hash; a damaged one is named in a warning and the next older one is used."""
    import logging

    names = ["last.safetensors", "next.safetensors", "previous.safetensors"]
    found = [directory / name for name in names if (directory / name).exists()]
    for k, path in enumerate(found):
        fix = f"resuming from {found[k + 1].name} instead" if k + 1 < len(found) else "training starts over"
        try:
            return path, load_tree(path, fix=fix)
        except CheckpointError as error:
            logging.getLogger("xdistill").warning("%s", error)
    return None


def resume_point(directory: Path) -> tuple[int, float] | None:
    """(epochs finished, the checkpoint's modification time) of the checkpoint a fit would resume from in
    ``directory``, or None when it would start from scratch."""
    found = newest_checkpoint(directory)
    if found is None:
        return None
    path, tree = found
    return int(tree.get("epoch", -1)) + 1, path.stat().st_mtime
