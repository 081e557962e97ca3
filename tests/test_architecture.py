"""docs/architecture.md names only modules that exist, and README sends readers to it (not outside the repository)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_module_path_in_the_architecture_page_exists():
    text = (ROOT / "docs" / "architecture.md").read_text()
    paths = re.findall(r"`((?:xdistill|tests|docs)/[\w/.]*)`", text)
    assert len(paths) > 30
    missing = [p for p in paths if not (ROOT / "src" / p).exists() and not (ROOT / p).exists()]
    assert not missing, missing
    for package in ("engine", "study", "methods", "explain", "metrics", "models", "data", "report"):
        assert f"xdistill/{package}/" in text, package  # every package is on the map


def test_readme_links_the_architecture_page_and_nothing_outside_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert "docs/architecture.md" in readme
    assert "../shared" not in readme
