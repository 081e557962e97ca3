"""Augmentation and the data pipeline: registered transforms drawn from keyed per-sample streams."""

import numpy as np
import pytest
import torch
import yaml

from xdistill.augment import build_augmentations
from xdistill.data import ArrayDataset
from xdistill.engine import distill
from xdistill.methods import StepState
from xdistill.methods.keyed_random import SampleStreams, mix, splitmix64

QUIET = dict(progress=False, loggers=(), checkpoint=False)


def images(n=48, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.random(size=(n, 1, 10, 10)).astype(np.float32)
    x[y == 1, :, 2:6, 1:4] += 1.0
    return ArrayDataset(x, y, ["a", "b"], "blocks")


def tiny_cnn(seed=1):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 2),
    )


def test_splitmix64_is_bit_exact_and_keys_are_stable_numbers():
    mask = (1 << 64) - 1

    def reference(x):  # the published SplitMix64 step on Python integers
        z = (x + 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    values = [0, 1, 12345678901234, (1 << 63) + 5, mask]
    signed = torch.tensor([v - (1 << 64) if v >= 1 << 63 else v for v in values])
    assert [int(v) & mask for v in splitmix64(signed)] == [reference(v) for v in values]
    assert mix(0, 1, 2) == mix(0, 1, 2) != mix(0, 2, 1)  # no hash(): the same in every process and Python
    u = SampleStreams(torch.arange(4000), seed=3, step=1)(50)
    assert 0.0 <= float(u.min()) and float(u.max()) < 1.0 and abs(float(u.mean()) - 0.5) < 0.005


def test_random_crop_shifts_each_sample_within_the_padding_and_hflip_flips_about_half():
    crop, flip = build_augmentations([{"name": "random_crop", "padding": 2}, "hflip"])
    x = torch.arange(4 * 6 * 6, dtype=torch.float32).reshape(4, 1, 6, 6) + 1
    streams = SampleStreams(torch.arange(4), 0, 1)
    out = crop(x, streams)
    assert out.shape == x.shape
    for i in range(4):  # each output is a window of the zero-padded input
        padded = torch.nn.functional.pad(x[i, 0], (2, 2, 2, 2))
        assert any(torch.equal(out[i, 0], padded[r : r + 6, c : c + 6]) for r in range(5) for c in range(5))
    flipped = flip(x.repeat(250, 1, 1, 1), SampleStreams(torch.arange(1000), 0, 1))
    share = (flipped[:, 0, 0, 0] != x.repeat(250, 1, 1, 1)[:, 0, 0, 0]).float().mean()
    assert 0.45 < float(share) < 0.55
    series = torch.arange(10.0).reshape(1, 1, 10)
    shifted = build_augmentations([{"name": "random_crop", "padding": 3}])[0](
        series, SampleStreams(torch.arange(1), 0, 2)
    )
    assert shifted.shape == series.shape


def test_random_crop_pads_black_in_the_raw_image_on_standardised_images():
    """torchvision pads before Normalize: on standardised images the padding is -mean/std per channel."""
    (crop,) = build_augmentations([{"name": "random_crop", "padding": 2}])
    crop.bind({"pixel_mean": [0.25, 0.5], "pixel_std": [0.5, 0.25]})
    x = torch.rand(64, 2, 6, 6) + 1.0  # every real value >= 1
    out = crop(x, SampleStreams(torch.arange(64), 0, 1))
    assert out.shape == x.shape
    for channel, fill in ((0, -0.5), (1, -2.0)):
        padding = out[:, channel] < 1.0
        assert padding.any() and torch.all(out[:, channel][padding] == fill)
    (given,) = build_augmentations([{"name": "random_crop", "padding": 2, "fill": 7.0}])
    given.bind({"pixel_mean": [0.25, 0.5], "pixel_std": [0.5, 0.25]})  # an explicit fill wins
    assert (given(x, SampleStreams(torch.arange(64), 0, 1)) == 7.0).any()
    with pytest.raises(ValueError, match="fill has 3 values for 2 channels"):
        build_augmentations([{"name": "random_crop", "fill": [0, 0, 0]}])[0](x, SampleStreams(torch.arange(64), 0, 1))


def test_training_on_standardised_images_sees_the_raw_black_padding(tmp_path):
    seen: list[float] = []

    class Recording(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tiny_cnn()

        def forward(self, x):
            if self.training:
                seen.append(float(x.min()))
            return self.net(x)

    data = images()  # values in [0, 2): no real value below 0
    data.info.update(pixel_mean=[0.5], pixel_std=[0.25])
    distill(
        None,
        Recording(),
        data,
        ["ce"],
        epochs=1,
        batch_size=16,
        augment=[{"name": "random_crop", "padding": 4}],
        work_dir=tmp_path,
        **QUIET,
    )
    assert seen and min(seen) == -2.0  # the raw image's 0 after standardisation, not the standardised 0


def test_series_augmentations_have_the_stated_noise():
    jitter, scaling = build_augmentations([{"name": "jitter", "sigma": 0.5}, {"name": "scaling", "sigma": 0.2}])
    x = torch.zeros(2000, 2, 50)
    noise = jitter(x, SampleStreams(torch.arange(2000), 0, 1))
    assert abs(float(noise.std()) - 0.5) < 0.01 and abs(float(noise.mean())) < 0.01
    factors = scaling(torch.ones(2000, 2, 50), SampleStreams(torch.arange(2000), 0, 1))
    assert torch.equal(factors[:, :, 0:1].expand_as(factors), factors)  # one factor per sample and channel
    assert abs(float(factors[:, :, 0].std()) - 0.2) < 0.02


def test_augmentation_draws_depend_on_the_sample_and_step_not_on_the_batch_split():
    crop, flip = build_augmentations([{"name": "random_crop", "padding": 2}, "hflip"])
    x, index = torch.rand(8, 1, 6, 6), torch.arange(20, 28)
    state = StepState(5, 10, 0)
    whole = flip(crop(x, state.streams(index, 1)), state.streams(index, 2))
    halves = [
        flip(crop(x[s], state.streams(index[s], 1)), state.streams(index[s], 2)) for s in (slice(0, 4), slice(4, 8))
    ]
    assert torch.equal(whole, torch.cat(halves))


@pytest.mark.parametrize(
    "spec, message",
    [
        ([{"name": "rotate"}], "unknown augmentation 'rotate'"),
        ([{"name": "random_crop", "padding": 0}], "padding must be a positive integer"),
        ([{"name": "hflip", "prob": 0.5}], "unexpected keyword argument 'prob'"),
    ],
)
def test_bad_augmentations_are_refused_before_training(spec, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        distill(None, tiny_cnn(), images(), ["ce"], epochs=1, augment=spec, work_dir=tmp_path, **QUIET)


def test_augmented_training_is_reproducible_and_differs_from_a_run_without_it(tmp_path):
    crop_flip = [{"name": "random_crop", "padding": 4}, {"name": "hflip"}]
    runs = [
        distill(
            None,
            tiny_cnn(),
            images(),
            ["ce"],
            epochs=3,
            batch_size=16,
            augment=augment,
            seed=0,
            work_dir=tmp_path / str(i),
            **QUIET,
        ).student.state_dict()
        for i, augment in enumerate([crop_flip, crop_flip, []])
    ]
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert any(not torch.allclose(runs[0][k], runs[2][k]) for k in runs[0])


def test_a_recipe_training_section_takes_augment(tmp_path):
    from xdistill.recipe import RecipeError, default_recipe_path, parse_recipe

    data = yaml.safe_load(default_recipe_path().read_text())
    data["training"]["augment"] = [{"name": "jitter", "sigma": 0.05}, {"name": "scaling"}]
    assert parse_recipe(data).training.augment[0] == {"name": "jitter", "sigma": 0.05}
    data["training"]["augment"] = [{"name": "jiter"}]
    with pytest.raises(RecipeError, match=r"^training: augment\[0\] \(jiter\): unknown augmentation 'jiter'"):
        parse_recipe(data)


class PairsDataset(torch.utils.data.Dataset):
    """A map-style dataset decoding items on the fly (not an ArrayDataset)."""

    def __init__(self, data: ArrayDataset) -> None:
        self.data, self.reads = data, 0

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        self.reads += 1
        return self.data.x[i].numpy(), int(self.data.y[i])


def test_a_map_style_dataset_trains_like_the_same_arrays(tmp_path):
    data = images()
    wrapped = PairsDataset(data)
    a = distill(
        None, tiny_cnn(), data, ["ce"], epochs=2, batch_size=16, val_fraction=0.25, work_dir=tmp_path / "a", **QUIET
    )
    b = distill(
        None, tiny_cnn(), wrapped, ["ce"], epochs=2, batch_size=16, val_fraction=0.25, work_dir=tmp_path / "b", **QUIET
    )
    assert wrapped.reads > 2 * 36  # read item by item, every epoch
    sa, sb = a.student.state_dict(), b.student.state_dict()
    assert all(torch.allclose(sa[k], sb[k], atol=1e-6) for k in sa)
    assert a.metrics["best_epoch"] == b.metrics["best_epoch"]
