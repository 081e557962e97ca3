"""Metrics: accuracy, teacher fidelity, explanation alignment, efficiency."""

from .alignment import cosine, kl_divergence, pearson, spearman, top1_agreement, topk_focus, topk_focus_ratio, topk_iou
from .classification import accuracy, average_precision, macro_auc_pr, macro_f1
from .compare import (
    AlignmentConfig,
    Summary,
    TeacherSide,
    alignment_metrics,
    compute_teacher_side,
    cost_metrics,
    evaluate_pair,
    part_importances,
    predict,
    to_jsonable,
)
from .efficiency import compression_ratio, flops, latency, parameter_count

__all__ = [
    "AlignmentConfig",
    "Summary",
    "TeacherSide",
    "accuracy",
    "compute_teacher_side",
    "average_precision",
    "macro_auc_pr",
    "alignment_metrics",
    "compression_ratio",
    "cosine",
    "cost_metrics",
    "evaluate_pair",
    "flops",
    "kl_divergence",
    "latency",
    "macro_f1",
    "parameter_count",
    "part_importances",
    "pearson",
    "predict",
    "spearman",
    "to_jsonable",
    "top1_agreement",
    "topk_focus",
    "topk_focus_ratio",
    "topk_iou",
]
