"""The README's "your own data and models" example, run as a user would copy it."""

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


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
