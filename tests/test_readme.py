"""The README's "your own data and models" example, run as a user would copy it."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_the_your_own_data_example_runs(tmp_path):
    section = README.read_text().split("### Your own data and models", 1)[1]
    script = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    bin_dir = str(Path(sys.executable).parent)  # the venv's python and xdistill
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "runs" / "my-study" / "report" / "report.html").exists()
    assert (tmp_path / "runs" / "my-audit" / "report" / "report.md").exists()
    assert "saliency Spearman" in done.stdout
    for student in ("alone", "tsd"):  # the example's models learn (they are not left at chance)
        result = json.loads((tmp_path / "runs" / "my-study" / "evaluation" / f"{student}.json").read_text())
        assert result["student_accuracy"] > 0.8 and result["teacher_accuracy"] > 0.8


@pytest.mark.slow
@pytest.mark.parametrize("block", range(len(re.findall(r"```python\n", README.read_text()))))
def test_every_python_block_runs_on_its_own(tmp_path, block):
    """Each ```python block of the README, copied alone into a fresh interpreter, runs as written."""
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[block]
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
