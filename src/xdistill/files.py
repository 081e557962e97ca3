"""Small file helpers shared by the store, the study runner and checkpoints."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: str | Path, data: Any, sort_keys: bool = False) -> None:
    """Write JSON atomically (a ``.part`` file renamed into place), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_text(json.dumps(data, indent=2, sort_keys=sort_keys, default=str))
    os.replace(partial, path)
