"""The term contract, the registries of terms and presets, and how a list of specs becomes terms.

A student's objective is a list of terms, each with a ``weight``: the engine minimises
``Σ weight · term`` and logs every term raw and weighted. A term is a small ``nn.Module`` (so
learned parts, like a FitNets regressor, train with the student) with up to three roles, all
optional:

* ``prepare(context)``: one-off work before training (a teacher bank, a subspace estimate, an
  attribution store, a regressor sized from feature shapes);
* ``transform(batch, state) -> batch``: a data-side change of the student's input (IG overlay);
* ``loss(step) -> Tensor``: the term's own quantity and nothing else (``kd`` is T²·KL; only
  ``ce`` is cross-entropy).

A *preset* is a name that expands into a list of term specs, so a paper stays one line and exact
(``hinton`` -> ``[{ce: 0.1}, {kd: 0.9, temperature: 4}]``). Terms never import the engine; the
engine never knows a term by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..options import check_options
from ..registry import Registry
from .keyed_random import SampleStreams


@dataclass
class Batch:
    """One training batch: inputs, labels, dataset indices (for per-sample caches and random streams).

    ``host_index`` holds the same indices on the host (the engine keeps the loader's copy): host-resident state
    (attribution stores, banks, the training set a term draws donors from) is read with it, and random draws
    that pick from that state are keyed on it, so nothing in a step waits for the device."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    host_index: torch.Tensor | None = None

    @property
    def index_on_host(self) -> torch.Tensor:
        """The dataset indices on the host (a copy from the device only when the engine gave none)."""
        return self.host_index if self.host_index is not None else self.index.cpu()


@dataclass(frozen=True)
class StepState:
    """The engine's per-step state: 1-based optimiser step, total steps, the run's seed."""

    index: int = 1
    total: int = 1
    seed: int = 0

    def streams(self, sample_index: torch.Tensor, salt: int = 0) -> SampleStreams:
        """Per-sample random streams keyed by (seed, salt, step, sample): the same in 1 or N processes."""
        return SampleStreams(sample_index, self.seed, self.index, salt)


@dataclass
class Step:
    """What a loss sees: the (possibly transformed) batch, both models' outputs and features."""

    batch: Batch
    student: nn.Module
    teacher: nn.Module | None
    student_logits: torch.Tensor
    teacher_logits: torch.Tensor | None
    student_features: dict[str, torch.Tensor] = field(default_factory=dict)
    teacher_features: dict[str, torch.Tensor] = field(default_factory=dict)
    state: StepState = field(default_factory=StepState)
    #: the teacher's logits on the untransformed input (e.g. precomputed once), when a term asked for them
    teacher_clean_logits: torch.Tensor | None = None
    #: structured outputs of models that give more than logits (a rationale model's mask, selection, ...)
    student_output: Any = None
    teacher_output: Any = None


@dataclass(frozen=True)
class TeacherNeeds:
    """What a term needs from the teacher on every training step, declared as data.

    ``logits``: the teacher's logits on the step's input (after any transform); ``clean_logits``: its logits on
    the untransformed input (the same for a sample in every epoch: computed once); ``structured``: its structured
    output (``forward_structured``, e.g. a rationale model's mask) on the step's input; ``model``: the loss calls
    the teacher itself (TSD's perturbed copies); ``layers``: hooked teacher layers the loss reads."""

    logits: bool = False
    clean_logits: bool = False
    structured: bool = False
    model: bool = False
    layers: tuple[str, ...] = ()

    @staticmethod
    def combine(needs: Iterable[TeacherNeeds]) -> TeacherNeeds:
        """Everything any of ``needs`` asks for."""
        items = list(needs)
        return TeacherNeeds(
            logits=any(n.logits for n in items),
            clean_logits=any(n.clean_logits for n in items),
            structured=any(n.structured for n in items),
            model=any(n.model for n in items),
            layers=tuple(sorted({layer for n in items for layer in n.layers})),
        )

    def with_layers(self, layers: tuple[str, ...]) -> TeacherNeeds:
        return TeacherNeeds(self.logits, self.clean_logits, self.structured, self.model, layers)

    @property
    def forward(self) -> bool:
        """The teacher runs on every step's input (for logits, a structured output or hooked layers)."""
        return self.logits or self.structured or bool(self.layers)


@dataclass
class PrepareContext:
    """What ``prepare`` may use: the models, the training data and where to keep artefacts."""

    teacher: nn.Module | None
    student: nn.Module
    train_x: torch.Tensor
    train_y: torch.Tensor
    dataset_fingerprint: str
    work_dir: Any = None  # pathlib.Path or None
    device: torch.device = torch.device("cpu")
    progress: bool = True
    rank: int = 0  # this process's rank in a distributed run
    world_size: int = 1
    barrier: Callable[[], None] | None = None  # waits for every rank (None in a single process)
    data_info: dict = field(default_factory=dict)  # the dataset's info (e.g. pixel_mean / pixel_std)
    cache_dir: Any = None  # pathlib.Path shared by several runs for teacher attributions, or None
    seed: int = 0  # the run's training seed (for keyed per-sample randomness)
    batch_size: int = 0  # the global batch size (0: unknown)
    total_steps: int = 0  # the optimiser steps the run plans (0: unknown)


class Term(nn.Module):
    """Base class of every registered term; subclasses override the roles they have."""

    #: the registry name (set when built from a spec) and the weight of ``loss`` in the objective
    name: str = ""
    weight: float = 1.0
    #: fits the student's outputs to the labels or the teacher's outputs (a list needs at least one such term); a
    #: term may set it per instance (explanation matching does at a distance that matches the maps' scale)
    fits_outputs: bool = False
    #: what ``loss`` needs from the teacher (None: ``TeacherNeeds(logits=needs_teacher)``)
    teacher_needs: TeacherNeeds | None = None
    #: shorthand for terms that need nothing from the teacher but may be used with one (``needs_teacher = False``)
    needs_teacher: ClassVar[bool] = True
    #: ``loss`` reads the student's structured output (``forward_structured``, e.g. a rationale model's mask)
    student_output: ClassVar[bool] = False
    #: ``transform`` returns a different input for the same sample in different steps
    changes_input: ClassVar[bool] = False
    #: ``loss`` is already a statistic of the global batch (summed over processes); never rescaled per process
    global_batch_statistic: ClassVar[bool] = False
    #: salt of this term's random streams (keeps its draws apart from other terms' at the same seed)
    salt: ClassVar[int] = 0
    #: options that older versions took, with what to write instead (a one-line hint when given)
    legacy_options: ClassVar[dict[str, str]] = {}
    #: module paths whose outputs ``loss`` reads through forward hooks
    student_layers: tuple[str, ...] = ()
    teacher_layers: tuple[str, ...] = ()

    def needs(self) -> TeacherNeeds:
        """What this term needs from the teacher (hooked layers included)."""
        needs = self.teacher_needs if self.teacher_needs is not None else TeacherNeeds(logits=self.needs_teacher)
        return needs.with_layers(tuple(self.teacher_layers)) if self.teacher_layers else needs

    def prepare(self, context: PrepareContext) -> None:
        """One-off work before training."""

    def artefacts(self) -> list[Any]:
        """Folders ``prepare`` filled that outlive the run (attribution stores; what ``xdistill explain`` lists)."""
        return []

    def check(self, teacher: nn.Module | None, student: nn.Module, sample_x: torch.Tensor) -> None:
        """Refuse (``ValueError``) what cannot work with these models and inputs, before anything trains:
        the default checks that the hooked layer paths exist in both models."""
        from ..hooks import FeatureHooks

        for model, paths, role in (
            (student, self.student_layers, "student"),
            (teacher, self.teacher_layers, "teacher"),
        ):
            if paths and model is None:
                raise ValueError("needs a teacher")
            if paths and model is not None:
                try:
                    FeatureHooks(model, paths).remove()
                except ValueError as error:
                    raise ValueError(f"{role} layer: {error}") from None

    def transform(self, batch: Batch, state: StepState) -> Batch:
        return batch

    def loss(self, step: Step) -> torch.Tensor:
        raise NotImplementedError

    def forward_options(self, state: StepState, batch: Batch) -> dict[str, Any]:
        """Keyword arguments for a structured student forward (e.g. a rationale model's noise and temperature)."""
        return {}

    @property
    def has_loss(self) -> bool:
        return type(self).loss is not Term.loss

    def extra_parameters(self) -> list[nn.Parameter]:
        """Learnable parts the term adds beside the student (a FitNets regressor, a SubDistill rotation);
        they train with the student and are not part of it (mdistiller's ``get_extra_parameters``)."""
        return list(self.parameters())


Method = Term  # the name of the contract before terms composed with weights

TERMS: Registry[Callable[..., Term]] = Registry("term")
METHODS = TERMS
#: preset name -> function(**options) -> list of term specs
PRESETS: Registry[Callable[..., list[Any]]] = Registry("preset")


def _split(spec: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict) and "name" in spec:
        return str(spec["name"]), {k: v for k, v in spec.items() if k != "name"}
    raise ValueError(f"a term must be a Term, a name, or a dict with 'name'; got {spec!r}")


def expand(specs: Iterable[Any]) -> list[Any]:
    """Presets replaced by the term specs they stand for (recursively); terms and objects as given."""
    return [spec for spec, _ in _expand_traced(specs)]


def _expand_traced(specs: Iterable[Any], origin: str = "") -> list[tuple[Any, str]]:
    """(spec, where it came from: "" when written directly, else "preset 'hinton'") after expanding presets."""
    out: list[tuple[Any, str]] = []
    for spec in specs:
        if isinstance(spec, Term):
            out.append((spec, origin))
            continue
        name, options = _split(spec)
        if name in PRESETS and name not in TERMS:
            check_options(PRESETS.get(name), options, what=f"{name} option")
            try:
                inner = PRESETS.get(name)(**options)
            except TypeError as error:
                raise ValueError(f"preset {name!r}: {str(error).split(') ', 1)[-1]}") from None
            out += _expand_traced(inner, origin or f"inside preset {name!r}")
        else:
            out.append((spec, origin))
    return out


#: the option that adds a term a second time on purpose: ``[hinton, {name: ce, weight: 0.4, again: true}]``
AGAIN = "again"


def refuse_repeats(traced: Sequence[tuple[Any, str]]) -> None:
    """A term named twice (directly or through a preset) would train twice, e.g. ``[ce, hinton]`` trains CE as
    ``ce`` and again inside hinton: refused naming both places, unless the later one says ``again: true``."""
    seen: dict[str, str] = {}
    for spec, origin in traced:
        if isinstance(spec, Term):
            continue
        name, options = _split(spec)
        if name in seen and not options.get(AGAIN):
            first, second = seen[name] or "written directly", origin or "written directly"
            where = f"once {first} and once {second}" if first != second else f"twice, {first}"
            raise ValueError(
                f"term {name!r} appears {where}, so it would train twice; drop one (a preset's share of a term "
                f"is one of its options), or, to add it on purpose, write the second as "
                f"{{name: {name}, weight: w, {AGAIN}: true}}"
            )
        seen.setdefault(name, origin)


def build_term(name: str, weight: float | None = None, **options: Any) -> Term:
    """Instantiate the term registered as ``name`` with its options and weight."""
    if name not in TERMS:
        from ..registry import UnknownNameError

        raise UnknownNameError(
            f"unknown term {name!r}; terms: {', '.join(TERMS.names())}; presets: {', '.join(PRESETS.names())}"
        )
    factory = TERMS.get(name)
    hints = getattr(factory, "legacy_options", {})
    for option in options:
        if option in hints:
            raise ValueError(f"{name}: option {option!r} is gone; {hints[option]}")
    check_options(factory, options, what=f"{name} option")
    try:
        term = factory(**options)
    except TypeError as error:
        raise ValueError(f"{name}: {str(error).replace('__init__() ', '')}") from None
    term.name = name
    if weight is not None:
        if not term.has_loss:
            raise ValueError(f"{name}: has no loss term, so it takes no weight (it is a data transform)")
        weight = float(weight)
        if weight < 0 or weight != weight:
            raise ValueError(f"{name}: weight must be >= 0, got {weight}")
        term.weight = weight
    return term


def term_from_spec(spec: Any) -> Term:
    """A term object, a registry name, or ``{"name": ..., "weight": w, **options}`` -> a term."""
    if isinstance(spec, Term):
        return spec
    name, options = _split(spec)
    weight = options.pop("weight", None)
    options.pop(AGAIN, None)
    return build_term(name, weight, **options)


def build_terms(specs: Sequence[Any]) -> list[Term]:
    """Specs (terms, presets, names, dicts) -> the terms of one objective, checked as a whole.

    Terms of weight 0 are dropped (``[ce, {kd: 0}]`` trains exactly as ``[ce]``). A list needs at
    least one term that fits the student's outputs (``ce``, ``kd``, ...): an explanation term alone would
    leave the predictions untrained. Explanation matching at its official geo-L1 distance counts as one, since
    its maps' scale follows the logits and the official student trains on it alone (with the teacher's frozen
    last layer; without it our small students stayed at chance: ``methods/explanation_matching.py``).
    """
    if isinstance(specs, (str, dict, Term)):
        specs = [specs]
    traced = _expand_traced(specs)
    refuse_repeats(traced)
    terms = [term_from_spec(spec) for spec, _ in traced]
    if not terms:
        raise ValueError("give at least one term (e.g. 'ce' for a student alone, ['ce', 'kd'] to distill)")
    if not any(t.has_loss for t in terms):
        raise ValueError(f"{', '.join(t.name for t in terms)}: no loss term; add e.g. ce or kd")
    if not any(t.fits_outputs for t in terms if t.has_loss and t.weight > 0):
        names = ", ".join(t.name or type(t).__name__ for t in terms)
        raise ValueError(
            f"[{names}] has no term that fits the student's outputs, so its predictions would not "
            "train; add ce and/or kd (e.g. [ce, {name: tsd, weight: 1}])"
        )
    return [t for t in terms if not (t.has_loss and t.weight == 0)]


def build_method(name: str, **options: Any) -> Term:
    """Instantiate one registered term (compatibility name of :func:`build_term`)."""
    weight = options.pop("weight", None)
    return build_term(name, weight, **options)


method_from_spec = term_from_spec


def soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(p_t^T ‖ p_s^T), averaged over the batch (Hinton et al. 2015)."""
    log_ps = F.log_softmax(student_logits / temperature, dim=1)
    log_pt = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    return F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True) * temperature**2
