"""Time-series classifiers on (B, C, T) input: FCN, ResNet (Wang et al. 2017), InceptionTime."""

from __future__ import annotations

import torch
from torch import nn

from .common import MODELS, scaled
from .common import activation as make_activation


def conv_bn(in_ch: int, out_ch: int, kernel: int, act: str | None) -> nn.Sequential:
    """'same'-padded Conv1d + BatchNorm (+ activation); even kernels pad one more on the right."""
    layers: list[nn.Module] = []
    if kernel % 2 == 0:
        layers.append(nn.ZeroPad1d((kernel // 2 - 1, kernel // 2)))
    layers += [
        nn.Conv1d(in_ch, out_ch, kernel, padding=kernel // 2 if kernel % 2 else 0, bias=False),
        nn.BatchNorm1d(out_ch),
    ]
    if act:
        layers.append(make_activation(act))
    return nn.Sequential(*layers)


class GlobalPoolHead(nn.Sequential):
    """Global average pooling over time, then a linear classifier."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__(nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(channels, num_classes))


@MODELS.register("fcn1d")
class FCN1d(nn.Module):
    """Fully convolutional network: conv blocks (128, 256, 128) x kernels (8, 5, 3) times ``width``."""

    def __init__(self, in_channels: int, num_classes: int, width: float = 1.0, activation: str = "relu") -> None:
        super().__init__()
        c1, c2, c3 = (scaled(c, width) for c in (128, 256, 128))
        self.features = nn.Sequential(
            conv_bn(in_channels, c1, 8, activation), conv_bn(c1, c2, 5, activation), conv_bn(c2, c3, 3, activation)
        )
        self.head = GlobalPoolHead(c3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ResidualBlock1d(nn.Module):
    """Three conv blocks (kernels 8, 5, 3) plus a shortcut (1x1 conv + BN when channels change)."""

    def __init__(self, in_ch: int, out_ch: int, act: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(in_ch, out_ch, 8, act), conv_bn(out_ch, out_ch, 5, act), conv_bn(out_ch, out_ch, 3, None)
        )
        self.shortcut = conv_bn(in_ch, out_ch, 1, None) if in_ch != out_ch else nn.BatchNorm1d(out_ch)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


@MODELS.register("resnet1d")
class ResNet1d(nn.Module):
    """Three residual blocks with (64, 128, 128) x ``width`` channels."""

    def __init__(self, in_channels: int, num_classes: int, width: float = 1.0, activation: str = "relu") -> None:
        super().__init__()
        channels = [scaled(c, width) for c in (64, 128, 128)]
        blocks, previous = [], in_channels
        for c in channels:
            blocks.append(ResidualBlock1d(previous, c, activation))
            previous = c
        self.features = nn.Sequential(*blocks)
        self.head = GlobalPoolHead(previous, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class InceptionModule(nn.Module):
    """Bottleneck, three parallel convolutions of falling kernel size, and a max-pool branch."""

    def __init__(self, in_ch: int, filters: int, kernel: int, act: str) -> None:
        super().__init__()
        self.bottleneck = nn.Conv1d(in_ch, filters, 1, bias=False) if in_ch > 1 else nn.Identity()
        width = filters if in_ch > 1 else in_ch
        kernels = [max(1, kernel // 2**i) for i in range(3)]
        kernels = [k - 1 if k % 2 == 0 else k for k in kernels]  # odd sizes keep 'same' length: 39, 19, 9
        self.convs = nn.ModuleList(nn.Conv1d(width, filters, k, padding=k // 2, bias=False) for k in kernels)
        self.pool = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1), nn.Conv1d(in_ch, filters, 1, bias=False))
        self.bn = nn.BatchNorm1d(4 * filters)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bottleneck(x)
        out = torch.cat([conv(z) for conv in self.convs] + [self.pool(x)], dim=1)
        return self.act(self.bn(out))


@MODELS.register("inceptiontime")
class InceptionTime(nn.Module):
    """One InceptionTime network (Ismail Fawaz et al. 2020): ``depth`` modules, a residual every 3."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        filters: int = 32,
        depth: int = 6,
        kernel: int = 40,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        self.shortcuts = nn.ModuleList()
        previous, residual_in = in_channels, in_channels
        for i in range(depth):
            self.blocks.append(InceptionModule(previous, filters, kernel, activation))
            previous = 4 * filters
            if i % 3 == 2:
                self.shortcuts.append(conv_bn(residual_in, previous, 1, None))
                residual_in = previous
        self.act = make_activation(activation)
        self.head = GlobalPoolHead(previous, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        for i, module in enumerate(self.blocks):
            x = module(x)
            if i % 3 == 2:
                x = self.act(x + self.shortcuts[i // 3](residual))
                residual = x
        return self.head(x)


@MODELS.register("lstm")
class LSTMClassifier(nn.Module):
    """Stacked LSTM over the time axis of (B, C, T) input; classifies from the top layer's last hidden state.

    The TSD paper's teacher is ``layers=3, hidden=100, chained_states=True``; its student a one-layer small
    LSTM. ``chained_states``: the official ``LSTMClassifierTeacherUnrolled`` (tsd-supplementary,
    ``utils/fcnbaseline.py``) runs three one-layer LSTMs and starts each from the final ``(h, c)`` of the one
    below, where ``nn.LSTM(num_layers=3)`` starts every layer from zeros: another function of the same weights.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden: int = 100,
        layers: int = 3,
        dropout: float = 0.0,
        chained_states: bool = False,
    ) -> None:
        super().__init__()
        if hidden < 1 or layers < 1:
            raise ValueError(f"hidden and layers must be >= 1, got {hidden} and {layers}")
        self.chained_states = chained_states
        if chained_states:
            if dropout:
                raise ValueError("chained_states takes no dropout (the official unrolled teacher has none)")
            self.stack = nn.ModuleList(
                nn.LSTM(in_channels if i == 0 else hidden, hidden, batch_first=True) for i in range(layers)
            )
        else:
            self.lstm = nn.LSTM(
                in_channels, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0
            )
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sequence = x.transpose(1, 2)
        if not self.chained_states:
            _, (h, _) = self.lstm(sequence)
            return self.head(h[-1])
        state = None
        for layer in self.stack:
            sequence, state = layer(sequence, state)  # each layer starts from the final state of the one below
        assert state is not None
        return self.head(state[0][-1])
