import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """A script of ``benchmarks/`` (not a package) imported as a module, for its tests (its folder on the path, as
    when it runs as a script, so it imports its siblings)."""
    import sys

    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def smooth_conv_net(channels: int = 2, classes: int = 3) -> nn.Module:
    """A small float64 1D conv net with tanh/softplus and biases: its IG path is not linear."""
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv1d(channels, 6, 5, padding=2),
        nn.Tanh(),
        nn.Conv1d(6, 8, 3, padding=1),
        nn.Softplus(),
        nn.AdaptiveAvgPool1d(4),
        nn.Flatten(),
        nn.Linear(32, classes),
    ).double()
    for p in net.parameters():
        nn.init.normal_(p, std=0.5)
    return net


@pytest.fixture
def conv_net() -> nn.Module:
    return smooth_conv_net()


@pytest.fixture
def series() -> torch.Tensor:
    torch.manual_seed(2)
    return torch.randn(4, 2, 24, dtype=torch.float64)


def pytest_configure(config):
    """Under pytest-xdist (``-n 2``) each worker computes on one thread, so two workers share two cores."""
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
