"""Image classifiers on (B, C, H, W) input: a small CNN, CIFAR ResNets, MobileNetV2 for CIFAR."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import MODELS, scaled
from .common import activation as make_activation


def conv_bn2d(
    in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: str | None = "relu"
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act:
        layers.append(make_activation(act))
    return nn.Sequential(*layers)


class PoolHead(nn.Sequential):
    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))


@MODELS.register("cnn")
class SmallCNN(nn.Module):
    """``depth`` stages of two 3x3 conv blocks and a 2x2 max-pool; channels 32, 64, ... times ``width``."""

    def __init__(
        self, in_channels: int, num_classes: int, width: float = 1.0, depth: int = 2, activation: str = "relu"
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_channels
        for stage in range(depth):
            c = scaled(32 * 2**stage, width)
            layers += [
                conv_bn2d(previous, c, act=activation),
                conv_bn2d(c, c, act=activation),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            previous = c
        self.features = nn.Sequential(*layers)
        self.head = PoolHead(previous, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    """Two 3x3 conv blocks with an identity shortcut. Option "A" pads channels with zeros
    (He et al. 2016, CIFAR ResNets); option "B" uses a 1x1 conv projection (ResNet-18)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, shortcut: str, act: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn2d(in_ch, out_ch, 3, stride, act=act), conv_bn2d(out_ch, out_ch, 3, 1, act=None)
        )
        self.pad = 0
        self.stride = stride
        self.project: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            if shortcut == "A":
                self.pad = out_ch - in_ch
            else:
                self.project = conv_bn2d(in_ch, out_ch, 1, stride, act=None)
        self.act = make_activation(act)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.project is not None:
            return self.project(x)
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs: a 3x3 stem, stages of BasicBlocks, global pooling, linear."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        blocks: list[int],
        channels: list[int],
        shortcut: str,
        width: float = 1.0,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        channels = [scaled(c, width) for c in channels]
        self.stem = conv_bn2d(in_channels, channels[0], act=activation)
        stages, previous = [], channels[0]
        for i, (n, c) in enumerate(zip(blocks, channels)):
            stride = 1 if i == 0 else 2
            stages.append(
                nn.Sequential(
                    *[
                        BasicBlock(previous if j == 0 else c, c, stride if j == 0 else 1, shortcut, activation)
                        for j in range(n)
                    ]
                )
            )
            previous = c
        self.stages = nn.Sequential(*stages)
        self.head = PoolHead(previous, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def _register_cifar_resnet(name: str, depth_n: int) -> None:
    def build(in_channels: int, num_classes: int, width: float = 1.0, activation: str = "relu") -> CifarResNet:
        return CifarResNet(in_channels, num_classes, [depth_n] * 3, [16, 32, 64], "A", width, activation)

    build.__doc__ = f"ResNet-{6 * depth_n + 2} for CIFAR (He et al. 2016, option A shortcuts)."
    MODELS.register(name)(build)


for _name, _n in (("resnet20", 3), ("resnet32", 5), ("resnet56", 9)):
    _register_cifar_resnet(_name, _n)


@MODELS.register("resnet18")
def resnet18(in_channels: int, num_classes: int, width: float = 1.0, activation: str = "relu") -> CifarResNet:
    """ResNet-18 with a CIFAR stem (3x3, stride 1, no max-pool) and projection shortcuts."""
    return CifarResNet(in_channels, num_classes, [2, 2, 2, 2], [64, 128, 256, 512], "B", width, activation)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection, residual when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, expansion: int, stride: int, act: str) -> None:
        super().__init__()
        hidden = in_ch * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn2d(in_ch, hidden, 1, act=act))
        layers += [conv_bn2d(hidden, hidden, 3, stride, groups=hidden, act=act), conv_bn2d(hidden, out_ch, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


@MODELS.register("mobilenetv2")
class MobileNetV2Cifar(nn.Module):
    """MobileNetV2 (Sandler et al. 2018) for 32x32 inputs: stride 1 stem and first stages."""

    # expansion, channels, blocks, stride
    CONFIG = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, in_channels: int, num_classes: int, width: float = 1.0, activation: str = "relu") -> None:
        super().__init__()
        previous = scaled(32, width)
        self.stem = conv_bn2d(in_channels, previous, 3, 1, act=activation)
        blocks = []
        for expansion, channels, n, stride in self.CONFIG:
            c = scaled(channels, width)
            for j in range(n):
                blocks.append(InvertedResidual(previous, c, expansion, stride if j == 0 else 1, activation))
                previous = c
        last = scaled(1280, max(1.0, width))
        self.blocks = nn.Sequential(*blocks, conv_bn2d(previous, last, 1, act=activation))
        self.head = PoolHead(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))
