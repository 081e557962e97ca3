"""Loss terms, data transforms and presets, registered by name (``build_term("kd", temperature=4)``)."""

from . import explanation_matching, feature_hints, ig_overlay, kd, rekd, subdistill, tsd  # noqa: F401  (registers)
from .base import (
    METHODS,
    PRESETS,
    TERMS,
    Batch,
    Method,
    PrepareContext,
    Step,
    StepState,
    TeacherNeeds,
    Term,
    build_method,
    build_term,
    build_terms,
    expand,
    method_from_spec,
    soft_kl,
    term_from_spec,
)
from .feature_hints import AttentionTransfer, FitNets
from .ig_overlay import IGOverlay, overlay
from .kd import CrossEntropy, KnowledgeDistillation
from .objective import NonFiniteLoss, Objective
from .rekd import GumbelAnneal, RationaleKL, RationalePredictionKL, RationaleSelection
from .subdistill import SubDistill, estimate_subspace
from .tsd import (
    PerturbationTSD,
    TemporalSaliencyDistillation,
    WindowSaliencyTSD,
    gradient_saliency,
    occlusion_saliency,
    perturbation_saliency,
    saliency_loss,
    sample_perturbations,
)

__all__ = [
    "METHODS",
    "PRESETS",
    "TERMS",
    "AttentionTransfer",
    "Batch",
    "CrossEntropy",
    "FitNets",
    "GumbelAnneal",
    "IGOverlay",
    "KnowledgeDistillation",
    "Method",
    "PerturbationTSD",
    "PrepareContext",
    "RationaleKL",
    "RationalePredictionKL",
    "RationaleSelection",
    "NonFiniteLoss",
    "Objective",
    "Step",
    "StepState",
    "TeacherNeeds",
    "SubDistill",
    "TemporalSaliencyDistillation",
    "Term",
    "WindowSaliencyTSD",
    "build_method",
    "build_term",
    "build_terms",
    "estimate_subspace",
    "expand",
    "gradient_saliency",
    "method_from_spec",
    "occlusion_saliency",
    "overlay",
    "perturbation_saliency",
    "sample_perturbations",
    "saliency_loss",
    "soft_kl",
    "term_from_spec",
]
