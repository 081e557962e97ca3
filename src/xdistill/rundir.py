"""The layout of a run directory, in one place: study, report, audit and the command line use it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


def safe_name(name: str) -> str:
    """A student's name as a file name (anything outside ``[A-Za-z0-9_.-]`` becomes ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", name).strip("_")


@dataclass(frozen=True)
class RunDirectory:
    """Every path a study writes below ``root``."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def recipe(self) -> Path:
        return self.root / "recipe.json"

    @property
    def environment(self) -> Path:
        return self.root / "environment.json"

    @property
    def stages(self) -> Path:
        return self.root / "stages.json"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    @property
    def teacher_dir(self) -> Path:
        return self.root / "teacher"

    @property
    def teacher_weights(self) -> Path:
        return self.teacher_dir / "teacher.safetensors"

    def student_dir(self, name: str) -> Path:
        return self.root / "students" / safe_name(name)

    def work_dir(self, stage: str) -> Path | None:
        """The folder a training stage (``teacher``, ``student:<name>``) fits in; None for other stages."""
        if stage == "teacher":
            return self.teacher_dir
        if stage.startswith("student:"):
            return self.student_dir(stage.removeprefix("student:"))
        return None

    @property
    def attributions(self) -> Path:
        return self.root / "attributions"

    @property
    def evaluation_dir(self) -> Path:
        return self.root / "evaluation"

    def evaluation(self, name: str) -> Path:
        """A student's evaluation JSON (its examples sit beside it as ``.npz``)."""
        return self.evaluation_dir / f"{safe_name(name)}.json"

    def examples(self, name: str) -> Path:
        return self.evaluation(name).with_suffix(".npz")

    @property
    def teacher_side(self) -> Path:
        """Stem of the teacher's half of the evaluation (``.npz`` + ``.json``)."""
        return self.evaluation_dir / "teacher_side"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @staticmethod
    def training_logs(work: Path) -> list[Path]:
        """A fit's per-epoch CSV logs in its folder (``logs/version_*/metrics.csv``; a resumed fit adds a version),
        in the order they were written."""
        found = [p for p in work.glob("logs/version_*/metrics.csv") if p.parent.name.split("_")[1].isdigit()]
        return sorted(found, key=lambda p: int(p.parent.name.split("_")[1]))

    def seed(self, seed: int) -> RunDirectory:
        """The run directory of one seed of a several-seed study."""
        return RunDirectory(self.root / f"seed-{seed}")
