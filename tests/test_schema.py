"""docs/recipe.md is what `xdistill schema` prints today: the reference cannot fall behind the code."""

import json
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "recipe.md"


def schema(*args):
    return subprocess.run(
        [sys.executable, "-m", "xdistill", "schema", *args], capture_output=True, text=True, timeout=120
    )


def test_the_recipe_reference_is_current():
    done = schema()
    assert done.returncode == 0, done.stderr
    assert done.stdout == DOC.read_text(), "docs/recipe.md is stale: run .venv/bin/xdistill schema > docs/recipe.md"


def test_the_reference_names_every_field_and_the_dataset_options():
    from xdistill.recipe import EvaluationSpec, Recipe

    text = DOC.read_text()
    for field in Recipe.model_fields:
        assert f"| `{field}` |" in text
    for field in EvaluationSpec.model_fields:
        assert f"| `evaluation.{field}` |" in text
    csv_row = next(line for line in text.splitlines() if line.startswith("| `csv` |"))
    assert "`label_column` = `'label'`" in csv_row  # what a user once read the source to find
    schema_json = json.loads(schema("--format", "json").stdout)
    assert set(schema_json["properties"]) == set(Recipe.model_fields)
