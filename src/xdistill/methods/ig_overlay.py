"""IG-overlay KD (Hernandez, Chang, Nordling 2025, arXiv 2503.13008).

The teacher's Integrated-Gradients maps for the whole training set are computed once into an
attribution store. During training, each sample is, with probability ``p``, replaced by
``0.5·x + 0.5·norm(m^s)`` with ``m = Σ_channels |IG|``, ``s ~ logUniform(1, 2)`` and ``norm`` a
per-sample min-max scaling to [0, 1], blended in the raw [0, 1] image space (standardised data is
mapped back and forth with its training statistics). ``ig_overlay`` is that data transform alone;
the paper's objective is the preset ``kd_ig``: ``0.99·CE + 0.01·T²·KL`` at T=2.5 with the teacher's
logits on the **clean** image (the official code precomputes them once), plus the overlay with p=0.1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import fingerprint
from ..explain import integrated_gradients
from ..store import AttributionStore
from .base import PRESETS, TERMS, Batch, PrepareContext, StepState, Term


def overlay(
    x: torch.Tensor,
    maps: torch.Tensor,
    exponent: torch.Tensor,
    mean: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
) -> torch.Tensor:
    """``0.5·x + 0.5·minmax(m^s)`` per sample, as the official code builds it: ``m = Σ_channels |IG|`` (one map per
    sample, broadcast to every channel), ``exponent`` (B,). With the data's channel ``mean``/``std`` the blend happens
    in the raw [0, 1] image space and the result is standardised again."""
    shape = (-1,) + (1,) * (x.ndim - 1)
    summed = maps.abs().sum(1, keepdim=True)
    powered = summed.pow(exponent.view(shape))
    flat = powered.flatten(1)
    low, high = flat.min(1).values.view(shape), flat.max(1).values.view(shape)
    scaled = (powered - low) / (high - low).clamp_min(1e-12)
    if mean is None or std is None:
        return 0.5 * x + 0.5 * scaled
    raw = x * std + mean
    return (0.5 * raw + 0.5 * scaled - mean) / std


@TERMS.register("ig_overlay")
class IGOverlay(Term):
    """The IG-overlay data transform (no loss of its own): see the module docstring."""

    name = "ig_overlay"

    changes_input = True
    needs_teacher = False  # the teacher is used in prepare only
    salt = 0x4B4449  # "KDI"
    legacy_options = {
        "alpha": "ig_overlay is the data transform alone; the paper's objective is the preset {name: kd_ig, p: ...} "
        "(or add ce and kd terms yourself)",
        "temperature": "ig_overlay is the data transform alone; set the temperature on the kd term or the kd_ig preset",
    }

    def __init__(
        self,
        p: float = 0.1,
        n_steps: int = 50,
        rule: str = "gauss_legendre",
        baseline: float = 0.0,
        target: str = "label",
        store_dir: str | None = None,
        store_chunk: int = 256,
        overwrite: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        if target not in ("label", "teacher"):
            raise ValueError(f"target must be 'label' or 'teacher', got {target!r}")
        self.p, self.target = p, target
        self.explainer: dict[str, Any] = {
            "method": "integrated_gradients",
            "n_steps": n_steps,
            "rule": rule,
            "baseline": baseline,
            "target": target,
        }
        self.store_dir, self.store_chunk, self.overwrite = store_dir, store_chunk, overwrite
        self.store: AttributionStore | None = None

    def artefacts(self) -> list[Any]:
        return [self.store.root] if self.store is not None else []

    def prepare(self, context: PrepareContext) -> None:
        if context.teacher is None:
            raise ValueError("ig_overlay needs a teacher")
        identity = {
            "teacher": fingerprint(context.teacher),
            "dataset": context.dataset_fingerprint,
            "explainer": self.explainer,
        }
        root = self.store_root(context, identity)
        self.store = AttributionStore.create(
            root,
            identity,
            context.train_x.shape[0],
            tuple(context.train_x.shape[1:]),
            self.store_chunk,
            overwrite=self.overwrite,
        )
        teacher, device = context.teacher.to(context.device), context.device

        def explain_chunk(start: int, end: int) -> torch.Tensor:
            x = context.train_x[start:end].to(device)
            target = context.train_y[start:end].to(device) if self.target == "label" else None
            return integrated_gradients(
                teacher,
                x,
                target,
                baseline=self.explainer["baseline"],
                n_steps=self.explainer["n_steps"],
                rule=self.explainer["rule"],
            )

        self.store.compute(
            explain_chunk,
            progress=context.progress,
            rank=context.rank,
            world_size=context.world_size,
            barrier=context.barrier,
        )
        stats = context.data_info
        if "pixel_mean" in stats:  # standardised images: blend in the raw image space, as the paper does
            shape = (1, -1) + (1,) * (context.train_x.ndim - 2)
            self.register_buffer("pixel_mean", torch.tensor(stats["pixel_mean"]).view(shape), persistent=False)
            self.register_buffer("pixel_std", torch.tensor(stats["pixel_std"]).view(shape), persistent=False)

    def store_root(self, context: PrepareContext, identity: dict[str, Any]) -> Path:
        """``store_dir`` if given; else a folder named by the identity's hash inside the shared
        ``cache_dir`` (runs with the same teacher, data and explainer reuse it); else ``work_dir/ig_store``."""
        if self.store_dir:
            return Path(self.store_dir)
        if context.cache_dir is not None:
            digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
            return Path(context.cache_dir) / f"ig_store-{digest}"
        return Path(context.work_dir or ".") / "ig_store"

    def transform(self, batch: Batch, state: StepState) -> Batch:
        if self.store is None:
            raise RuntimeError("ig_overlay.prepare() must run before training (the engine does this)")
        if not self.training or self.p == 0:
            return batch
        # drawn on the host from per-sample streams (the same however the batch is split across processes): which
        # samples get a map decides what to read from the host-resident store, so nothing waits for the device
        host_index = batch.index_on_host
        draws = state.streams(host_index, self.salt)(2)
        chosen = draws[:, 0] < self.p
        if not chosen.any():
            return batch
        maps = self.store[host_index[chosen]].to(batch.x, non_blocking=True)
        exponent = torch.exp(draws[chosen, 1] * math.log(2.0)).to(batch.x.device)  # exp of U(0, log 2)
        rows = chosen.nonzero()[:, 0].to(batch.x.device, non_blocking=True)  # (a boolean mask would sync there)
        x = batch.x.clone()
        mean, std = getattr(self, "pixel_mean", None), getattr(self, "pixel_std", None)
        x[rows] = overlay(
            batch.x[rows], maps, exponent, None if mean is None else mean.to(x), None if std is None else std.to(x)
        )
        return dataclasses.replace(batch, x=x)


@PRESETS.register("kd_ig")
def kd_ig(p: float = 0.1, alpha: float = 0.01, temperature: float = 2.5, n_steps: int = 50, **options: Any) -> list:
    """KD-IG as published: ``(1-α)·CE + α·T²·KL`` (T=2.5, α=0.01) against the teacher's logits on the clean
    image, and the IG overlay with probability ``p`` (50 Gauss-Legendre IG steps). Overlay options pass through."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return [
        {"name": "ce", "weight": 1 - alpha},
        {"name": "kd", "weight": alpha, "temperature": temperature, "teacher_input": "clean"},
        {"name": "ig_overlay", "p": p, "n_steps": n_steps, **options},
    ]
