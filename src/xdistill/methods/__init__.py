"""Distillation methods, registered by name (``build_method("kd", temperature=4)``)."""

from . import feature_hints, ig_overlay, kd, rekd, subdistill, tsd  # noqa: F401  (registers the methods)
from .base import METHODS, Batch, Method, PrepareContext, Step, build_method, method_from_spec, soft_kl
from .feature_hints import AttentionTransfer, FitNets
from .ig_overlay import IGOverlay, overlay
from .kd import KD_PRESETS, CrossEntropy, KnowledgeDistillation
from .rekd import RationaleExtraction, RationaleKD
from .subdistill import SubDistill, estimate_subspace
from .tsd import (
    PerturbationTSD, TemporalSaliencyDistillation, WindowSaliencyTSD, gradient_saliency, occlusion_saliency,
    perturbation_saliency, sample_perturbations, saliency_loss,
)

__all__ = [
    "KD_PRESETS", "METHODS", "AttentionTransfer", "Batch", "CrossEntropy", "FitNets", "IGOverlay",
    "KnowledgeDistillation", "Method", "RationaleExtraction", "RationaleKD", "SubDistill", "estimate_subspace", "PrepareContext", "Step", "TemporalSaliencyDistillation", "PerturbationTSD", "WindowSaliencyTSD", "perturbation_saliency",
    "sample_perturbations", "saliency_loss",
    "build_method", "method_from_spec", "gradient_saliency", "occlusion_saliency", "overlay", "soft_kl",
]
