"""Own data and models, refused up front in one line that names the fix: (N, H, W) arrays given to an image model,
a misspelt model option (listing the accepted ones), and a failed run that would leave an empty run directory."""

import io
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
import torch
import yaml

from xdistill.cli import main
from xdistill.models.factory import ModelError, check_model_options, model_for_data


def cli(*args: str) -> tuple[int, str]:
    stderr = io.StringIO()
    with redirect_stderr(stderr), redirect_stdout(io.StringIO()):
        code = main(list(args))
    return code, stderr.getvalue()


def greyscale_npz(path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(24, 12, 12)).astype(np.float32), np.arange(24) % 2
    np.savez(path, x_train=x[:16], y_train=y[:16], x_test=x[16:], y_test=y[16:])
    return path


def test_an_image_model_given_n_h_w_arrays_names_the_channel_axis_to_add():
    with pytest.raises(ModelError) as refused:
        model_for_data("cnn", torch.zeros(2, 12, 12), 2, where="teacher")
    message = str(refused.value)
    assert message.startswith(
        "teacher: model 'cnn' takes images (N, C, H, W), but the data's inputs are shaped (12, 12)"
    )
    assert "add a channel axis, x[:, None], shaped (N, 1, 12, 12)" in message and "kind: image" in message
    assert "groups=1" not in message
    model_for_data("cnn", torch.zeros(2, 1, 12, 12), 2, where="teacher")  # the fix works
    model_for_data("fcn1d", torch.zeros(2, 12, 12), 2, where="teacher")  # a series model reads them as (C, T)


def test_a_misspelt_model_option_lists_the_accepted_ones():
    with pytest.raises(ValueError, match=r"^unknown option 'widht'; accepted: width, activation$"):
        check_model_options("fcn1d", {"widht": 0.5})
    with pytest.raises(ValueError, match="'in_channels' comes from the data"):
        check_model_options("fcn1d", {"in_channels": 3})
    check_model_options("lstm", {"hidden": 8, "layers": 1})
    with pytest.raises(ModelError, match=r"^--student-options: unknown option 'widht'; accepted: width, depth"):
        model_for_data("cnn", torch.zeros(2, 1, 8, 8), 2, options={"widht": 0.5}, where="--student")


def test_a_failed_several_seed_run_leaves_no_empty_run_directory(tmp_path):
    data = greyscale_npz(tmp_path / "grey.npz")
    recipe = {
        "name": "grey",
        "seeds": [0, 1],
        "dataset": {"name": f"npz:{data}"},
        "teacher": {"model": "cnn", "options": {"width": 0.25}, "train": {"steps": 2}},
        "training": {"steps": 2},
        "students": [{"name": "a", "model": "cnn", "options": {"width": 0.125}, "methods": ["ce"]}],
        "evaluation": {"parts": "pixel", "max_samples": 4, "examples": 0},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "runs" / "grey"
    code, stderr = cli("run", str(tmp_path / "r.yaml"), "--out", str(out), "--quiet")
    assert code == 2 and "add a channel axis" in stderr and stderr.count("\n") == 1, stderr
    assert not out.exists()  # neither seed-0/ nor the recipe's run directory above it
    assert (tmp_path / "runs").exists()  # (a folder the user's --out named above it is not ours to remove)
