"""Teacher/student architectures with a size knob, built by name: ``build_model("fcn1d", 1, 2, width=0.25)``."""

from . import images, rationale, timeseries  # noqa: F401  (registers the families)
from .common import ACTIVATIONS, MODELS, build_model
from .images import CifarResNet, MobileNetV2Cifar, SmallCNN, resnet18
from .rationale import RationaleModel, Selector, TextCNN, build_rationale_model
from .timeseries import FCN1d, InceptionTime, ResNet1d

__all__ = [
    "ACTIVATIONS",
    "MODELS",
    "CifarResNet",
    "FCN1d",
    "InceptionTime",
    "MobileNetV2Cifar",
    "ResNet1d",
    "RationaleModel",
    "Selector",
    "SmallCNN",
    "TextCNN",
    "build_model",
    "build_rationale_model",
    "resnet18",
]
