"""The objective: the weighted sum of a student's terms, built once from its specs, and what it needs.

Each term declares as data what it needs from the teacher (:class:`TeacherNeeds`: logits on the step's
input or on the clean input, a structured output, the teacher model itself, hooked layers) and whether its
loss is already a statistic of the global batch. The objective combines those declarations and owns the step
between the engine's forward passes and the optimiser: the data transforms, the structured-forward options,
the weighted sum with each process's share, per-term logging and the non-finite check. The engine reads the
objective; it never looks at a term.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from .base import Batch, PrepareContext, Step, StepState, TeacherNeeds, Term, build_terms


class NonFiniteLoss(FloatingPointError):
    """A term's loss became NaN or infinite; the message names the term."""


def _unique(names: set[str], name: str) -> str:
    """``name``, or ``name#2``, ``name#3``... when a term of that name is already in ``names``."""
    if name not in names:
        return name
    k = 2
    while f"{name}#{k}" in names:
        k += 1
    return f"{name}#{k}"


class Objective:
    """``Σ weight · term`` over one student's terms (built and validated once; see :meth:`build`)."""

    def __init__(self, terms: Sequence[Term]) -> None:
        self.terms = nn.ModuleList(terms)  # (registered with the engine's module: saved in its checkpoints)
        self.term_list: list[Term] = list(terms)
        self.losses = [t for t in terms if t.has_loss]
        seen: set[str] = set()
        self.names: list[str] = []
        for term in self.losses:
            self.names.append(_unique(seen, term.name or type(term).__name__.lower()))
            seen.add(self.names[-1])
        self.teacher_needs = TeacherNeeds.combine(t.needs() for t in self.losses)
        self.teacher_needs = self.teacher_needs.with_layers(tuple(sorted({p for t in terms for p in t.teacher_layers})))
        self.student_layers = tuple(sorted({p for t in terms for p in t.student_layers}))
        self.student_structured = any(t.student_output for t in terms)
        self.changes_input = any(t.changes_input for t in terms)

    @classmethod
    def build(cls, specs: Objective | Sequence[Any] | Any) -> Objective:
        """An objective from specs (terms, presets, names, dicts; see ``build_terms``), or ``specs`` itself."""
        if isinstance(specs, Objective):
            return specs
        objective = cls(build_terms(specs))
        if [t.name for t in objective.term_list] == ["kd"]:
            logging.getLogger("xdistill").warning(
                "the objective is kd alone (T²·KL, no cross-entropy); Hinton's mix of both is the preset 'hinton'"
            )
        return objective

    def __iter__(self) -> Iterator[Term]:
        return iter(self.term_list)

    def __len__(self) -> int:
        return len(self.term_list)

    # -- what the engine asks ---------------------------------------------------------------------------------
    def teacher_logits_cacheable(self, augmented: bool) -> bool:
        """The teacher's logits depend on the sample only (computed once per sample): true when the terms need
        them and nothing changes the input between epochs, no hooked layer or structured output is read."""
        needs = self.teacher_needs
        return needs.logits and not (augmented or self.changes_input or needs.structured or needs.layers or needs.model)

    def prepare(self, context: PrepareContext) -> None:
        for term in self.term_list:
            term.prepare(context)

    def transform(self, batch: Batch, state: StepState) -> Batch:
        for term in self.term_list:
            batch = term.transform(batch, state)
        return batch

    def forward_options(self, state: StepState, batch: Batch) -> dict[str, Any]:
        options: dict[str, Any] = {}
        for term in self.term_list:
            options.update(term.forward_options(state, batch))
        return options

    def loss(self, step: Step, share: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the loss to minimise, what to log: every term raw and weighted, and ``loss``).

        ``share`` is this process's weight in the global batch's mean: a per-process batch mean counts for it; a
        term whose loss is already a statistic of the global batch counts once (DDP averages the gradients).
        Nothing here waits for the device (no host sync): :meth:`check_finite` inspects what was logged."""
        total = step.student_logits.new_zeros(())
        logged: dict[str, torch.Tensor] = {}
        shown = step.student_logits.new_zeros(())
        for name, term in zip(self.names, self.losses):
            value = term.loss(step)
            total = total + term.weight * value * (1.0 if term.global_batch_statistic else share)
            logged[name] = value.detach()
            logged[f"{name}_weighted"] = term.weight * value.detach()
            shown = shown + term.weight * value.detach()
        logged["loss"] = shown
        return total, logged

    @staticmethod
    def check_finite(logged: dict[str, torch.Tensor]) -> None:
        """Raise :class:`NonFiniteLoss` naming the first term whose logged value (or running sum) is NaN or
        infinite. One host sync for all terms: the engine calls it at bounded intervals, not every step."""
        names = [n for n in logged if n != "loss" and not n.endswith("_weighted")]
        if not names:
            return
        values = torch.stack([logged[n].detach().double().reshape(()) for n in names])
        finite = torch.isfinite(values).tolist()
        for name, ok, value in zip(names, finite, values.tolist()):
            if not ok:
                raise NonFiniteLoss(f"loss term {name!r} became {value}")

    def extra_parameters(self) -> list[nn.Parameter]:
        return [p for term in self.term_list for p in term.extra_parameters()]
