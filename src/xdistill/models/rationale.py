"""Select-predict rationale models (REKD, arXiv 2601.22531; official code JiayiDai/REKD ``nns/generator.py``).

A selector (the generator) gives two logits, (drop, keep), for every part of the input
(windows of a series, patches of an image, tokens of a text); a hard keep-mask is drawn with
a straight-through Gumbel-softmax during training and thresholded at 0.5 in evaluation; a
predictor classifies the input with the dropped parts replaced by a baseline (for text, with
their embeddings zeroed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import MODELS, build_model, scaled


class TextCNN(nn.Module):
    """Embedding + 1D convolutions + max-pool over tokens; ``keep`` (B, L) zeroes token embeddings."""

    def __init__(
        self, in_channels: int, num_classes: int, vocab_size: int = 1000, embed_dim: int = 32, width: float = 1.0
    ) -> None:
        super().__init__()
        channels = scaled(64, width)
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, channels, k, padding=k // 2) for k in (3, 5))
        self.head = nn.Linear(2 * channels, num_classes)

    def embed(self, tokens: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embedding(tokens.long().reshape(tokens.shape[0], -1))
        return emb if keep is None else emb * keep.unsqueeze(-1)

    def forward(self, tokens: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        h = self.embed(tokens, keep).transpose(1, 2)
        pooled = [F.relu(conv(h)).amax(2) for conv in self.convs]
        return self.head(torch.cat(pooled, 1))


MODELS.register("textcnn")(TextCNN)


class HFSequenceClassifier(nn.Module):
    """A ``transformers`` sequence classifier (BERT & co.) taking token ids and a ``keep`` mask.

    ``pretrained``: a local folder with the user's weights (loaded offline, safetensors only,
    so no code or pickle runs); or ``config``: a dict for a freshly initialised model (tests).
    Masked tokens have their input embeddings zeroed, as in the other rationale predictors.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        pretrained: str | None = None,
        config: dict | None = None,
        model_type: str = "bert",
    ) -> None:
        super().__init__()
        try:
            import transformers
        except ImportError as error:
            raise ValueError(
                "the 'bert' predictor needs the transformers package: pip install 'xdistill[text]'"
            ) from error
        if pretrained:
            self.model = transformers.AutoModelForSequenceClassification.from_pretrained(
                pretrained, num_labels=num_classes, local_files_only=True, use_safetensors=True
            )
        elif config is not None:
            cfg = transformers.AutoConfig.for_model(model_type, num_labels=num_classes, **config)
            self.model = transformers.AutoModelForSequenceClassification.from_config(cfg)
        else:
            raise ValueError("give pretrained= (a local folder with weights) or config= (a model configuration)")

    def forward(self, tokens: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        tokens = tokens.long()
        embeddings = self.model.get_input_embeddings()(tokens)
        if keep is not None:
            embeddings = embeddings * keep.unsqueeze(-1)
        return self.model(inputs_embeds=embeddings, attention_mask=torch.ones_like(tokens)).logits


MODELS.register("bert")(HFSequenceClassifier)


class Selector(nn.Module):
    """Two logits per part, (drop, keep): a small same-resolution conv net, averaged over each part."""

    def __init__(self, kind: str, in_channels: int, part_size: int, width: float = 1.0, vocab_size: int = 1000) -> None:
        super().__init__()
        c = scaled(16, width)
        self.kind, self.part_size = kind, part_size
        if kind == "window":
            self.body = nn.Sequential(
                nn.Conv1d(in_channels, c, 7, padding=3),
                nn.ReLU(),
                nn.Conv1d(c, c, 5, padding=2),
                nn.ReLU(),
                nn.Conv1d(c, 2, 3, padding=1),
            )
        elif kind == "patch":
            self.body = nn.Sequential(
                nn.Conv2d(in_channels, c, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(c, c, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(c, 2, 3, padding=1),
            )
        elif kind == "token":
            self.embedding = nn.Embedding(vocab_size, c)
            self.body = nn.Sequential(nn.Conv1d(c, c, 5, padding=2), nn.ReLU(), nn.Conv1d(c, 2, 3, padding=1))
        else:
            raise ValueError(f"part kind must be 'window', 'patch' or 'token', got {kind!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_parts, 2) logits; index 1 is 'keep'."""
        if self.kind == "token":
            return self.body(self.embedding(x.long()).transpose(1, 2)).transpose(1, 2)
        scores = self.body(x)
        pool = F.avg_pool1d if self.kind == "window" else F.avg_pool2d
        return pool(scores, self.part_size, self.part_size, ceil_mode=True).flatten(2).transpose(1, 2)


#: per-sample uniforms: ``uniform(n)`` -> (B, n) in [0, 1) (e.g. ``methods.keyed_random.SampleStreams``)
Uniform = Callable[[int], torch.Tensor]


def gumbel_noise(
    shape: torch.Size, like: torch.Tensor, eps: float = 1e-20, uniform: Uniform | None = None
) -> torch.Tensor:
    """Standard Gumbel noise shaped ``shape`` (batch first), from ``uniform`` or else the global RNG."""
    if uniform is None:
        u = torch.rand(shape, device=like.device, dtype=like.dtype)
    else:
        u = uniform(shape[1:].numel()).reshape(shape).to(device=like.device, dtype=like.dtype)
    return -torch.log(-torch.log(u + eps) + eps)


def hard_gumbel_softmax(
    logits: torch.Tensor, temperature: float | torch.Tensor, uniform: Uniform | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(straight-through one-hot sample, log-probabilities of the noised softmax), both shaped like ``logits``.

    Forward: exactly one-hot on the last axis; backward: the gradient of the soft sample.
    """
    noised = (logits + gumbel_noise(logits.shape, logits, uniform=uniform)) / temperature
    soft, log_soft = F.softmax(noised, dim=-1), F.log_softmax(noised, dim=-1)
    hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return (hard - soft).detach() + soft, log_soft


@dataclass
class RationaleOutput:
    """Everything one forward pass of a rationale model computed (the losses read it from the engine's ``Step``)."""

    logits: torch.Tensor  # (B, classes): the predictor's output on the masked input
    mask: torch.Tensor  # (B, n_parts): 1 = kept (straight-through in training)
    selector_logits: torch.Tensor  # (B, n_parts, 2): (drop, keep) logits
    log_probs: torch.Tensor | None  # (B, n_parts, 2): the noised selection log-probabilities (training only)
    temperature: float | torch.Tensor  # the Gumbel temperature of the draw (a 0-dim tensor: the model's buffer)


class RationaleModel(nn.Module):
    """``predictor(z ⊙ x)`` with the keep-mask ``z`` chosen per part by ``selector`` (REKD's generator).

    Training: ``z`` is the keep component of a hard Gumbel-softmax sample (straight-through) at a
    temperature (``forward_structured``'s argument, else the ``gumbel_temperature`` buffer) with noise
    from ``uniform`` (per-sample streams from the engine, else the global RNG). Evaluation:
    ``z = 1[softmax(logits)_keep ≥ 0.5]``. ``forward`` returns the predictor's logits, so a rationale
    model is an ordinary classifier to the metrics; ``forward_structured`` returns a
    :class:`RationaleOutput`, which the engine hands to the losses. The model keeps no state between calls.
    """

    def __init__(
        self, selector: Selector, predictor: nn.Module, gumbel_temperature: float = 5.0, baseline: float = 0.0
    ) -> None:
        super().__init__()
        self.selector, self.predictor, self.baseline = selector, predictor, baseline
        self.register_buffer("gumbel_temperature", torch.tensor(float(gumbel_temperature)))

    @property
    def kind(self) -> str:
        return self.selector.kind

    def select(
        self, x: torch.Tensor, uniform: Uniform | None = None, temperature: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, float | torch.Tensor]:
        """(mask (B, n_parts), selector logits, noised log-probabilities or None, temperature) for ``x``."""
        logits = self.selector(x)
        # (the buffer stays a tensor: reading it as a float would wait for the device on every forward)
        tau: float | torch.Tensor = self.gumbel_temperature if temperature is None else temperature  # type: ignore[assignment]
        if self.training:
            sample, log_probs = hard_gumbel_softmax(logits, tau, uniform)
            return sample[..., 1], logits, log_probs, tau
        return (F.softmax(logits, -1)[..., 1] >= 0.5).to(logits.dtype), logits, None, tau

    def expand(self, mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Part mask (B, n_parts) -> a mask broadcastable to ``x``."""
        size = self.selector.part_size
        if self.kind == "window":
            return mask.repeat_interleave(size, 1)[:, : x.shape[-1]].unsqueeze(1)
        if self.kind == "patch":
            gh, gw = -(-x.shape[-2] // size), -(-x.shape[-1] // size)
            grid = mask.reshape(-1, 1, gh, gw).repeat_interleave(size, 2).repeat_interleave(size, 3)
            return grid[..., : x.shape[-2], : x.shape[-1]]
        return mask

    def predict_with(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The predictor's logits for ``x`` with the given part mask (e.g. another model's)."""
        if self.kind == "token":
            return self.predictor(x, keep=mask)
        m = self.expand(mask, x)
        return self.predictor(x * m + self.baseline * (1 - m))

    def forward_structured(
        self, x: torch.Tensor, uniform: Uniform | None = None, temperature: float | None = None
    ) -> RationaleOutput:
        mask, selector_logits, log_probs, tau = self.select(x, uniform, temperature)
        return RationaleOutput(self.predict_with(x, mask), mask, selector_logits, log_probs, tau)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_structured(x).logits


def build_rationale_model(
    in_channels: int,
    num_classes: int,
    kind: str = "window",
    part_size: int = 8,
    predictor: str = "fcn1d",
    predictor_options: dict | None = None,
    selector_width: float = 1.0,
    vocab_size: int = 1000,
    gumbel_temperature: float = 5.0,
) -> RationaleModel:
    """A rationale model from a registered predictor architecture and a matching selector."""
    options = dict(predictor_options or {})
    if kind == "token" and predictor == "textcnn":
        options.setdefault("vocab_size", vocab_size)
    net = build_model(predictor, in_channels, num_classes, **options)
    return RationaleModel(Selector(kind, in_channels, part_size, selector_width, vocab_size), net, gumbel_temperature)


MODELS.register("rationale")(build_rationale_model)
