"""A term written in the user's own file: registered through the public registry, it needs the teacher's logits on
the clean input and one hooked teacher layer, and trains through ``distill()`` and through a recipe with no change
to the engine (the engine reads what the term declares)."""

import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

USER_TERMS = textwrap.dedent('''
    """The user's own term, outside xdistill."""
    import torch
    import torch.nn.functional as F

    from xdistill.methods import TERMS, TeacherNeeds, Term, soft_kl

    SEEN = []  # what the loss was handed, step by step

    @TERMS.register("clean_hint")
    class CleanHint(Term):
        """T²·KL to the teacher's logits on the clean input + the channel-mean map of one hooked layer."""

        fits_outputs = True
        teacher_needs = TeacherNeeds(clean_logits=True)

        def __init__(self, layer: str = "features.1", temperature: float = 2.0):
            super().__init__()
            self.layer, self.temperature = layer, temperature
            self.teacher_layers = (layer,)
            self.student_layers = (layer,)

        def loss(self, step):
            teacher_map = step.teacher_features[self.layer].mean(1)
            student_map = step.student_features[self.layer].mean(1)
            same = torch.allclose(step.teacher_logits, step.teacher_clean_logits, atol=1e-5)  # no transform here
            SEEN.append((same, step.teacher_clean_logits.shape, tuple(teacher_map.shape)))
            hint = F.mse_loss(student_map, teacher_map.detach())
            return soft_kl(step.student_logits, step.teacher_clean_logits, self.temperature) + hint
''')


@pytest.fixture(scope="module")
def user_module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user")
    (folder / "user_terms.py").write_text(USER_TERMS)
    sys.path.insert(0, str(folder))
    try:
        yield folder, importlib.import_module("user_terms")
    finally:
        sys.path.remove(str(folder))


def test_a_user_term_with_clean_logits_and_a_hooked_layer_trains_through_distill(user_module, tmp_path):
    from xdistill.data import ArrayDataset
    from xdistill.engine import distill
    from xdistill.models import build_model
    from xdistill.training import train_classifier

    _, module = user_module
    rng = np.random.default_rng(0)
    y = np.arange(64) % 2
    x = (rng.normal(size=(64, 1, 24)) + y[:, None, None]).astype(np.float32)
    data = ArrayDataset(x, y, ["a", "b"], "waves")
    torch.manual_seed(0)
    teacher = build_model("fcn1d", 1, 2, width=0.25)
    train_classifier(teacher, data, epochs=3)
    torch.manual_seed(1)
    student = build_model("fcn1d", 1, 2, width=0.125)
    before = [p.detach().clone() for p in student.parameters()]
    module.SEEN.clear()
    distill(
        teacher,
        student,
        data,
        ["ce", {"name": "clean_hint", "weight": 0.5}],
        steps=6,
        batch_size=16,
        val_fraction=0,
        monitor="train_loss",
        work_dir=tmp_path,
        progress=False,
        loggers=(),
    )
    assert len(module.SEEN) == 6
    same, clean_shape, map_shape = module.SEEN[0]
    assert same  # the clean logits (computed once per sample) are the teacher's on this very batch
    assert clean_shape == (16, 2) and map_shape[0] == 16
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))


@pytest.mark.slow
def test_a_user_term_trains_through_a_recipe_that_imports_its_module(user_module, tmp_path):
    from xdistill.recipe import default_recipe_path

    folder, _ = user_module
    (tmp_path / "user_terms.py").write_text((folder / "user_terms.py").read_text())
    data = yaml.safe_load(default_recipe_path().read_text())
    data.pop("seeds")
    data["imports"] = ["user_terms"]
    data["teacher"]["train"] = {"steps": 12}
    data["training"] = {"steps": 6}
    data["students"] = [
        {"name": "hinted", "model": "fcn1d", "options": {"width": 0.125}, "methods": ["ce", {"name": "clean_hint"}]}
    ]
    data["evaluation"] = {"explainer": "saliency", "max_samples": 10, "examples": 0, "flip_steps": 0}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(data))
    done = subprocess.run(
        [sys.executable, "-m", "xdistill", "run", str(recipe), "--out", str(tmp_path / "run"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    stages = json.loads((tmp_path / "run" / "stages.json").read_text())
    assert "student:hinted" in stages and (tmp_path / "run" / "report" / "report.html").exists()
    data["imports"] = ["no_such_module"]
    recipe.write_text(yaml.safe_dump(data))
    refused = subprocess.run(
        [sys.executable, "-m", "xdistill", "run", str(recipe), "--out", str(tmp_path / "other")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert refused.returncode == 2 and refused.stderr.startswith("xdistill: error: imports[0]: cannot import")


def test_the_engine_names_no_term_and_probes_no_attribute():
    """The engine reads the objective: no term name, no hasattr, no term's flag (docstrings aside)."""
    import ast

    from xdistill.methods import TERMS

    engine = Path(__file__).parents[1] / "src" / "xdistill" / "engine"
    flags = {"needs_teacher", "needs_teacher_forward", "changes_input", "global_batch_statistic", "student_output"}
    for path in engine.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "hasattr", f"{path.name}:{node.lineno}"
            if isinstance(node, ast.Compare):  # a comparison with a term's name
                names = [c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
                assert not set(names) & set(TERMS.names()), f"{path.name}:{node.lineno}"
            if isinstance(node, ast.Attribute):
                assert node.attr not in flags, f"{path.name}:{node.lineno} reads {node.attr}"
