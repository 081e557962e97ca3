"""Device placement without a GPU: the training step of every bundled student and every explainer run with the
models and the batch on PyTorch's ``meta`` device. (The alignment metrics compute on the CPU in float64 by design,
with scipy's ranks: they take a device's tensors and copy them once.)

A tensor a term, model, explainer or metric creates on the CPU while its inputs sit elsewhere fails here (mixing
``meta`` and CPU tensors raises), as it would fail, or silently copy every step, on the first GPU run. So does a
host sync in the step (``.item()``, ``float(tensor)``): meta tensors have no values. A term's one-off ``prepare``
needs real values (a store, a fitted subspace): it runs on the CPU first, and its results must then follow
``.to(device)`` like any module state. ``XDISTILL_TEST_DEVICE=cuda`` runs the same tests on a GPU.
"""

from __future__ import annotations

import os
import types

import pytest
import torch
import yaml

from xdistill.config import TrainConfig
from xdistill.engine.module import DistillationModule
from xdistill.explain import EXPLAINERS
from xdistill.methods import TERMS, PrepareContext
from xdistill.models import build_model
from xdistill.recipe import default_recipe_path, parse_recipe, student_index
from xdistill.study import Study
from xdistill.subtask import ClassSubset

DEVICE = torch.device(os.environ.get("XDISTILL_TEST_DEVICE", "meta"))
#: bundled recipes that together reach every registered term (the CIFAR ones download; their Fashion-MNIST twins
#: use the same terms and models)
RECIPES = [
    "default.yaml",
    "tsd_paper.yaml",
    "subdistill_fashion_mnist.yaml",
    "ig_overlay_fashion_mnist.yaml",
    "rekd_series.yaml",
    "rekd_text.yaml",
    "rekd_fashion_mnist.yaml",
    "shortcut_series.yaml",
]
BATCH = 4


def _students():
    for name in RECIPES:
        data = yaml.safe_load((default_recipe_path().parent / name).read_text())
        data.pop("seeds", None)
        for spec in parse_recipe(data).expanded_students():
            yield pytest.param(name, spec.name, id=f"{name.removesuffix('.yaml')}:{spec.name}")


def _meta_step(study: Study, student_name: str, tmp_path) -> DistillationModule:
    """``prepare`` on the CPU, then one training step and its backward pass with everything on ``meta``."""
    spec = next(s for s in study.recipe.expanded_students() if s.name == student_name)
    recipe_student = study.recipe.students[student_index(study.recipe, spec)]
    teacher = study.build_teacher()
    classes = study.recipe.dataset.subtask
    teacher = ClassSubset(teacher, classes).eval() if classes else teacher
    student = study.build("student", recipe_student.model, recipe_student.options, student=True)
    objective = study.objective(spec)
    train = study.student_splits[0]
    x, y = train.x[:32], train.y[:32]
    context = PrepareContext(
        teacher=teacher,
        student=student,
        train_x=x,
        train_y=y,
        dataset_fingerprint="placement",
        work_dir=tmp_path / "work",
        progress=False,
        data_info=dict(getattr(train, "info", None) or {}),
        batch_size=BATCH,
        total_steps=10,
    )
    objective.prepare(context)
    module = DistillationModule(student, teacher, objective, config=TrainConfig(batch_size=BATCH))
    module.train_data = train
    if module.clean_logits:  # what the engine's set-up computes once, on the host
        with torch.no_grad():
            module.teacher_logits = teacher.eval()(x)
    module.to(DEVICE)
    teacher.to(DEVICE)
    module._trainer = types.SimpleNamespace(world_size=1, global_rank=0, global_step=1)  # what a step reads
    module.on_train_epoch_start()
    batch = module.transfer_batch_to_device((x[:BATCH], y[:BATCH], torch.arange(BATCH)), DEVICE, 0)  # as the engine
    loss = module.training_step(batch, 0)
    assert loss.device.type == DEVICE.type
    loss.backward()
    module.on_train_batch_end(None, batch, 0)
    return module


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """One Study per recipe (its data loaded once), released at the end."""
    opened: dict[str, Study] = {}

    def study(recipe: str) -> Study:
        if recipe not in opened:
            data = yaml.safe_load((default_recipe_path().parent / recipe).read_text())
            data.pop("seeds", None)
            opened[recipe] = Study(parse_recipe(data), tmp_path_factory.mktemp("run"), progress=False)
        return opened[recipe]

    yield study
    for opened_study in opened.values():
        opened_study.lock.release()


@pytest.mark.slow
@pytest.mark.parametrize("recipe, student", list(_students()))
def test_a_training_step_of_every_bundled_student_stays_on_the_device(recipe, student, tmp_path, studies):
    module = _meta_step(studies(recipe), student, tmp_path)
    trained = [p for p in module.parameters() if p.grad is not None]
    assert trained and all(p.grad.device.type == DEVICE.type for p in trained)
    assert all(t.device.type == DEVICE.type for t in module._sums.values())  # the per-term sums stay on the device


def test_the_bundled_recipes_reach_every_registered_term():
    """So that the test above covers every term the library registers (a user's terms are theirs to test)."""
    from xdistill.methods import build_terms

    used = set()
    for name in RECIPES:
        data = yaml.safe_load((default_recipe_path().parent / name).read_text())
        data.pop("seeds", None)
        used |= {t.name for spec in parse_recipe(data).expanded_students() for t in build_terms(spec.methods)}
    library = {n for n in TERMS.names() if TERMS.get(n).__module__.startswith("xdistill.")}
    assert library - used == set()


@pytest.mark.parametrize("method", sorted(EXPLAINERS.names()))
def test_every_explainer_runs_on_the_device(method):
    model = build_model("fcn1d", 1, 3, width=0.125).to(DEVICE)
    x = torch.randn(3, 1, 24, device=DEVICE)
    # (occlusion needs windows that fit the series; a seeded generator cannot live on ``meta``, it can on CUDA)
    options = {"occlusion": {"window": 4, "stride": 4}, "smoothgrad": {"seed": None}}.get(method, {})
    attribution = EXPLAINERS.get(method)(model, x, torch.tensor([0, 1, 2], device=DEVICE), **options)
    assert attribution.device.type == DEVICE.type and attribution.shape == x.shape
