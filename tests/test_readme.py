"""The README and the guides under docs/: short, clean, every link alive, and every example runs as a user would
copy it."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: the guides the README sends readers to, where the long material lives
GUIDES = [ROOT / "docs" / f"{name}.md" for name in ("studies", "python-api", "own-data", "scaling", "reliability")]
GUIDES.append(ROOT / "docs" / "performance.md")
PAGES = [README, *GUIDES]
PYTHON_BLOCKS = [(page, i) for page in PAGES for i in range(len(re.findall(r"```python\n", page.read_text())))]


def test_the_readme_is_short_and_opens_with_the_two_commands():
    text = README.read_text()
    assert len(text.splitlines()) <= 180
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands == ["./scripts/setup && .venv/bin/xdistill run", "./scripts/test"]
    assert text.index("```bash") < 600  # right after the three lines of what it is
    assert "![" in text and "(docs/report.png)" in text and (ROOT / "docs" / "report.png").exists()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_internal_notes_and_every_relative_link_resolves(page):
    text = page.read_text()
    assert not re.search(r"\bissues? \d+", text, re.I), "issue numbers are internal notes"
    assert "~~" not in text, "struck-through figures"
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        assert (page.parent / target).resolve().exists(), f"{page.name} links to a missing {target}"


def test_the_readme_links_every_guide():
    text = README.read_text()
    for guide in GUIDES:
        assert f"docs/{guide.name}" in text, guide.name
    assert "RESULTS.md" in text


@pytest.mark.slow
def test_the_your_own_data_example_runs(tmp_path):
    text = (ROOT / "docs" / "own-data.md").read_text()
    script = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
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
@pytest.mark.parametrize("page,block", PYTHON_BLOCKS, ids=[f"{p.name}-{i}" for p, i in PYTHON_BLOCKS])
def test_every_python_block_runs_on_its_own(tmp_path, page, block):
    """Each ```python block of the README and the guides, copied alone into a fresh interpreter, runs as written."""
    code = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)[block]
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
