import pytest
import torch

from xdistill.metrics import parameter_count
from xdistill.models import MODELS, build_model
from xdistill.models.timeseries import InceptionModule
from xdistill.registry import UnknownNameError

TIME_SERIES = ["fcn1d", "resnet1d", "inceptiontime"]
IMAGES = ["cnn", "resnet20", "resnet32", "resnet56", "resnet18", "mobilenetv2"]


def test_every_family_is_registered():
    assert set(TIME_SERIES + IMAGES) <= set(MODELS.names())


@pytest.mark.parametrize("name", TIME_SERIES)
@pytest.mark.parametrize("length", [7, 150])
def test_time_series_shapes(name, length):
    model = build_model(name, 3, 5, **({"filters": 8} if name == "inceptiontime" else {"width": 0.25}))
    assert model(torch.randn(2, 3, length)).shape == (2, 5)


@pytest.mark.parametrize("name", IMAGES)
def test_image_shapes(name):
    model = build_model(name, 3, 7, width=0.25)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_small_cnn_runs_on_8x8_and_28x28():
    model = build_model("cnn", 1, 10)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    "name,expected",
    [
        # published counts for CIFAR-10: He et al.'s option-A ResNets as in akamaster/pytorch_resnet_cifar10
        ("resnet20", 269_722),
        ("resnet32", 464_154),
        ("resnet56", 853_018),
        # kuangliu/pytorch-cifar ResNet18
        ("resnet18", 11_173_962),
        # kuangliu's MobileNetV2 has 2,296,922: it adds 1x1 projection shortcuts (59,152) and an expand
        # conv in the t=1 block (1,088) that the paper's block (ours, as torchvision) does not have
        ("mobilenetv2", 2_296_922 - 59_152 - 1_088),
    ],
)
def test_image_parameter_counts(name, expected):
    assert parameter_count(build_model(name, 3, 10)) == expected


def test_time_series_parameter_counts_by_hand():
    # FCN, 1 channel, 2 classes, bias-free convs before BN:
    fcn = 1 * 128 * 8 + 256 + 128 * 256 * 5 + 512 + 256 * 128 * 3 + 256 + 128 * 2 + 2
    assert parameter_count(build_model("fcn1d", 1, 2)) == fcn == 264_450
    block1 = 1 * 64 * 8 + 64 * 64 * 5 + 64 * 64 * 3 + 1 * 64 + 4 * 128
    block2 = 64 * 128 * 8 + 128 * 128 * 5 + 128 * 128 * 3 + 64 * 128 + 4 * 256
    block3 = 128 * 128 * 8 + 128 * 128 * 5 + 128 * 128 * 3 + 4 * 256
    assert parameter_count(build_model("resnet1d", 1, 2)) == block1 + block2 + block3 + 258
    # Inception module: kernels 39, 19, 9 (odd versions of 40, 20, 10), a pool branch, BN over 4x32
    assert parameter_count(InceptionModule(1, 32, 40, "relu")) == 32 * (39 + 19 + 9) + 32 + 256
    assert parameter_count(InceptionModule(128, 32, 40, "relu")) == 128 * 32 + 32 * 32 * 67 + 128 * 32 + 256


def test_width_knob_shrinks_models():
    for name in ["fcn1d", "resnet1d", "cnn", "resnet20", "mobilenetv2"]:
        channels = 1 if name in ("fcn1d", "resnet1d") else 3
        big, small = (parameter_count(build_model(name, channels, 10, width=w)) for w in (1.0, 0.25))
        assert small < big / 4, name


def test_bad_arguments_are_clear():
    with pytest.raises(UnknownNameError, match="resnet20"):
        build_model("resnet21", 3, 10)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("cnn", 3, 1)
    with pytest.raises(ValueError, match="width"):
        build_model("cnn", 3, 10, width=0)


def test_smooth_activation_option():
    model = build_model("fcn1d", 1, 2, width=0.1, activation="softplus")
    assert any(isinstance(m, torch.nn.Softplus) for m in model.modules())
