"""The recipe's names and options checked against the registries and the functions that will take them, before
any work: datasets, models (and their options), explainers, parts, terms. Each mistake is one :class:`RecipeError`
line naming the field (``students[0].options: unknown option 'widht'; accepted: width, activation``)."""

from __future__ import annotations

import json
from typing import Any

from .errors import RecipeError


def check_names(recipe: Any) -> None:
    """Names that must exist in a registry, and options the constructors accept."""
    from .data import DATASETS
    from .explain import EXPLAINERS
    from .parts import PARTS

    _known("dataset.name", DATASETS, recipe.dataset.name.partition(":")[0])
    if recipe.teacher.model is not None:
        _known_model("teacher", recipe.teacher.model, recipe.teacher.options)
    for i, student in enumerate(recipe.students):
        _known_model(f"students[{i}]", student.model, student.options)
    _known("evaluation.explainer", EXPLAINERS, recipe.evaluation.explainer)
    _known("evaluation.parts", PARTS, recipe.evaluation.parts)
    check_evaluation_options(
        recipe.evaluation.explainer,
        recipe.evaluation.explainer_options,
        recipe.evaluation.parts,
        recipe.evaluation.part_options,
        ("evaluation.explainer_options", "evaluation.part_options"),
    )
    seen = {explainer_key(recipe.evaluation.explainer, recipe.evaluation.explainer_options): "evaluation.explainer"}
    for i, extra in enumerate(recipe.evaluation.also):
        _known(f"evaluation.also[{i}].explainer", EXPLAINERS, extra.explainer)
        key = explainer_key(extra.explainer, extra.explainer_options)
        if key in seen:
            raise RecipeError(
                f"evaluation.also[{i}]: {extra.explainer} with these options repeats {seen[key]}, so it would be "
                "measured twice; remove it, or give it other explainer_options"
            )
        seen[key] = f"evaluation.also[{i}]"
        check_evaluation_options(
            extra.explainer,
            extra.explainer_options,
            recipe.evaluation.parts,
            recipe.evaluation.part_options,
            (f"evaluation.also[{i}].explainer_options", "evaluation.part_options"),
        )
    _check_methods("teacher.methods", recipe.teacher.methods)
    index = {s.name: i for i, s in enumerate(recipe.students)}
    for student in recipe.expanded_students():  # a swept student's index is its base's
        _check_methods(f"students[{index[student.name.split('[', 1)[0]]}].methods", student.methods)


def explainer_key(explainer: str, options: dict[str, Any]) -> str:
    """One explainer with its options, comparable with another (options in any order)."""
    return json.dumps([explainer, options], sort_keys=True, default=str)


def check_evaluation_options(
    explainer: str,
    explainer_options: dict,
    parts: str,
    part_options: dict,
    fields: tuple[str, str] = ("explainer_options", "part_options"),
) -> None:
    """Explainer and part options against the functions that will take them (names and types); ``fields``
    names the two in the message (recipe fields, or the audit's flags)."""
    from .explain import EXPLAINERS
    from .options import check_options
    from .parts import PARTS

    for field, fn, options, skip in (
        (fields[0], EXPLAINERS.get(explainer), explainer_options, ("model", "x", "target")),
        (fields[1], PARTS.get(parts), part_options, ("attr",)),
    ):
        try:
            check_options(fn, options, skip=skip, what="option")
        except ValueError as error:
            raise RecipeError(f"{field}: {error}") from None


#: the input layout each built-in part kind reduces: (dimensions of one input, what that is)
PART_LAYOUTS = {
    "timestep": (2, "(C, T) series"),
    "window": (2, "(C, T) series"),
    "pixel": (3, "(C, H, W) images"),
    "patch": (3, "(C, H, W) images"),
}


def check_k(
    k: int,
    input_shape: tuple[int, ...],
    parts: str,
    part_options: dict,
    fields: tuple[str, str] = ("evaluation.k", "evaluation.parts"),
) -> None:
    """``k`` (top-k parts) against the number of parts inputs of ``input_shape`` give; ``fields`` names k and parts."""
    import torch

    from .parts import to_parts

    layout = PART_LAYOUTS.get(parts)
    if layout is not None and len(input_shape) != layout[0]:
        fitting = [name for name, (ndim, _) in PART_LAYOUTS.items() if ndim == len(input_shape)]
        instead = f"use {' or '.join(fitting)}" if fitting else "use feature (every input element a part)"
        raise RecipeError(
            f"{fields[1]}: {parts!r} parts are for {layout[1]}; this data's inputs are shaped {tuple(input_shape)}: "
            f"{instead}"
        )
    try:
        count = to_parts(torch.zeros((1,) + tuple(input_shape)), parts, **part_options).shape[1]
    except ValueError as error:
        raise RecipeError(f"{fields[1]}: {error}") from None
    if k > count:
        raise RecipeError(
            f"{fields[0]}: {k} is more than the {count} {parts} parts of inputs shaped "
            f"{tuple(input_shape)}; choose k <= {count}"
        )


def _known(where: str, registry, name: str) -> None:
    """The registry's own 'unknown X; known: ...' message, prefixed with the field."""
    try:
        registry.get(name)
    except LookupError as error:
        raise RecipeError(f"{where}: {error}") from None


def _known_model(where: str, name: str, options: dict[str, Any]) -> None:
    """A registered architecture, or an importable ``package.module:Class``, and the options it accepts."""
    from .models import MODELS
    from .models.factory import check_model_options
    from .models.user import is_import_path, resolve

    if not is_import_path(name):
        _known(f"{where}.model", MODELS, name)
    else:
        try:
            resolve(name)
        except ValueError as error:
            raise RecipeError(f"{where}.model: {error}") from None
    try:
        check_model_options(name, options)
    except ValueError as error:
        raise RecipeError(f"{where}.options: {error}") from None


def _check_methods(where: str, methods: list) -> None:
    """Each spec (term or preset) builds, and the list as a whole is a trainable objective."""
    from .methods import build_terms
    from .methods.base import expand, term_from_spec

    for j, spec in enumerate(methods):
        try:
            [term_from_spec(s) for s in expand([spec])]  # the spec on its own, before the list as a whole
        except TypeError as error:
            raise RecipeError(f"{where}[{j}]: {error}".replace("__init__() ", "")) from None
        except (LookupError, ValueError) as error:
            raise RecipeError(f"{where}[{j}]: {error}") from None
    try:
        build_terms(methods)
    except (LookupError, ValueError, TypeError) as error:
        raise RecipeError(f"{where}: {error}") from None
