"""Select-predict rationale models (REKD, arXiv 2601.22531).

A selector scores every part of the input (windows of a series, patches of an image, tokens
of a text); a hard keep-mask is drawn from the scores through a straight-through or Gumbel
relaxation (Gumbel by default: a deterministic threshold at the start, where every keep
probability is near the sparsity target, tends to drop every part and never recover); a predictor classifies the input with the unselected parts replaced by a
baseline (for text, with their embeddings zeroed). ``forward`` returns the predictor's
logits, so a rationale model is an ordinary classifier to the engine and the metrics; the
mask of the latest forward pass is kept in ``last_probs`` / ``last_mask``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import MODELS, build_model, scaled


class TextCNN(nn.Module):
    """Embedding + 1D convolutions + max-pool over tokens; ``keep`` (B, L) zeroes token embeddings."""

    def __init__(self, in_channels: int, num_classes: int, vocab_size: int = 1000, embed_dim: int = 32,
                 width: float = 1.0) -> None:
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

    def __init__(self, in_channels: int, num_classes: int, pretrained: str | None = None,
                 config: dict | None = None, model_type: str = "bert") -> None:
        super().__init__()
        try:
            import transformers
        except ImportError as error:
            raise ValueError("the 'bert' predictor needs the transformers package: pip install 'xdistill[text]'") from error
        if pretrained:
            self.model = transformers.AutoModelForSequenceClassification.from_pretrained(
                pretrained, num_labels=num_classes, local_files_only=True, use_safetensors=True)
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
    """Per-part scores: a small same-resolution conv net, averaged over each part."""

    def __init__(self, kind: str, in_channels: int, part_size: int, width: float = 1.0, vocab_size: int = 1000) -> None:
        super().__init__()
        c = scaled(16, width)
        self.kind, self.part_size = kind, part_size
        if kind == "window":
            self.body = nn.Sequential(nn.Conv1d(in_channels, c, 7, padding=3), nn.ReLU(), nn.Conv1d(c, c, 5, padding=2),
                                      nn.ReLU(), nn.Conv1d(c, 1, 3, padding=1))
        elif kind == "patch":
            self.body = nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1),
                                      nn.ReLU(), nn.Conv2d(c, 1, 3, padding=1))
        elif kind == "token":
            self.embedding = nn.Embedding(vocab_size, c)
            self.body = nn.Sequential(nn.Conv1d(c, c, 5, padding=2), nn.ReLU(), nn.Conv1d(c, 1, 3, padding=1))
        else:
            raise ValueError(f"part kind must be 'window', 'patch' or 'token', got {kind!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "token":
            return self.body(self.embedding(x.long()).transpose(1, 2)).squeeze(1)
        scores = self.body(x)
        pool = F.avg_pool1d if self.kind == "window" else F.avg_pool2d
        return pool(scores, self.part_size, self.part_size, ceil_mode=True).flatten(1)


class RationaleModel(nn.Module):
    """``predictor(mask(x))`` with the mask chosen by ``selector``; see the module docstring."""

    def __init__(self, selector: Selector, predictor: nn.Module, relaxation: str = "gumbel",
                 gumbel_temperature: float = 0.5, baseline: float = 0.0) -> None:
        super().__init__()
        if relaxation not in ("straight_through", "gumbel"):
            raise ValueError(f"relaxation must be 'straight_through' or 'gumbel', got {relaxation!r}")
        self.selector, self.predictor = selector, predictor
        self.relaxation, self.gumbel_temperature, self.baseline = relaxation, gumbel_temperature, baseline
        self.last_probs: torch.Tensor | None = None
        self.last_mask: torch.Tensor | None = None

    @property
    def kind(self) -> str:
        return self.selector.kind

    def select(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(keep probabilities, hard 0/1 mask with relaxed gradients), both (B, n_parts)."""
        scores = self.selector(x)
        probs = torch.sigmoid(scores)
        if self.relaxation == "gumbel" and self.training:
            u = torch.rand_like(scores).clamp(1e-6, 1 - 1e-6)
            soft = torch.sigmoid((scores + torch.log(u) - torch.log1p(-u)) / self.gumbel_temperature)
        else:
            soft = probs
        hard = (soft > 0.5).to(soft.dtype)
        return probs, hard + soft - soft.detach()  # straight-through: hard forward, soft gradient

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs, mask = self.select(x)
        self.last_probs, self.last_mask = probs, mask
        if self.kind == "token":
            return self.predictor(x, keep=mask)
        m = self.expand(mask, x)
        return self.predictor(x * m + self.baseline * (1 - m))


def build_rationale_model(in_channels: int, num_classes: int, kind: str = "window", part_size: int = 8,
                          predictor: str = "fcn1d", predictor_options: dict | None = None, selector_width: float = 1.0,
                          relaxation: str = "gumbel", vocab_size: int = 1000) -> RationaleModel:
    """A rationale model from a registered predictor architecture and a matching selector."""
    options = dict(predictor_options or {})
    if kind == "token" and predictor == "textcnn":
        options.setdefault("vocab_size", vocab_size)
    net = build_model(predictor, in_channels, num_classes, **options)
    return RationaleModel(Selector(kind, in_channels, part_size, selector_width, vocab_size), net, relaxation)


MODELS.register("rationale")(build_rationale_model)
