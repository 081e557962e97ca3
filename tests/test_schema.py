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


def test_the_reference_lists_every_models_options_and_the_defaults_per_data_family():
    from xdistill.models import MODELS

    text = DOC.read_text()
    rows = {line.split(" | ")[0].strip("| `"): line for line in text.split("## Model options")[1].splitlines()[4:]}
    for name in MODELS.names():
        assert name in rows, name
    assert "`width` = `1.0`, `depth` = `2`" in rows["cnn"] and "`hidden` = `100`" in rows["lstm"]
    val = next(line for line in text.splitlines() if line.startswith("| `training.val_fraction` |"))
    assert "series `0.0`, image `0.1`" in val  # what series runs use, not the field's own 0.2
    batch = next(line for line in text.splitlines() if line.startswith("| `training.batch_size` |"))
    assert "series `16`" in batch
