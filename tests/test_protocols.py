"""The papers' protocols: docs/protocols.md read against the presets, and the schedule they rely on."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from xdistill.config import TrainConfig, resolve
from xdistill.methods import Method, build_terms
from xdistill.models import build_model
from xdistill.optim import configure
from xdistill.protocols import PROTOCOLS

TABLE = Path(__file__).parents[1] / "docs" / "protocols.md"


def documented_settings() -> dict[str, dict[str, object]]:
    """``{protocol: {field: value}}`` from every `` `field = value` `` cell of docs/protocols.md."""
    settings: dict[str, dict[str, object]] = {}
    current = None
    for line in TABLE.read_text().splitlines():
        heading = re.match(r"^## `(\w+)`", line)
        if heading:
            current = heading.group(1)
            settings[current] = {}
            continue
        if current and line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            for field, value in re.findall(r"`(\w+) = ([^`]+)`", cells[-1]):
                parsed = yaml.safe_load(value)
                settings[current][field] = float(parsed) if re.fullmatch(r"[0-9.]+e-?[0-9]+", str(parsed)) else parsed
    return settings


def test_the_docs_table_lists_every_protocol_and_matches_its_preset():
    documented = documented_settings()
    assert set(documented) == set(PROTOCOLS.names())
    for name, fields in documented.items():
        config = TrainConfig(protocol=name)
        assert len(fields) >= 8, name  # optimiser, lr or its departure, schedule, batch, budget, split, selection...
        for field, value in fields.items():
            assert getattr(config, field) == value, (name, field)


def test_every_setting_a_preset_fixes_is_in_the_table():
    documented = documented_settings()
    for name in PROTOCOLS.names():
        fixed = {k for k, v in PROTOCOLS.get(name).training.items() if v is not None and k != "steps"}
        missing = fixed - set(documented[name]) - {"warmup"}
        assert not missing, (name, missing)


def test_fields_given_beside_a_protocol_win_and_the_family_defaults_do_not():
    config = TrainConfig(protocol="tsd_paper", epochs=3, lr=0.01)
    assert (config.epochs, config.lr, config.weight_decay, config.milestones) == (3, 0.01, 1e-5, [25, 30, 35])
    resolved = resolve(TrainConfig(protocol="tsd_paper"), "series", "student")  # series defaults: steps, train_loss
    assert (resolved.steps, resolved.epochs, resolved.monitor, resolved.val_fraction) == (None, 500, "val_loss", 0.2)
    with pytest.raises(ValueError, match="unknown protocol 'tsd'"):
        TrainConfig(protocol="tsd")


def test_the_tsd_schedule_steps_every_batch_as_the_official_code():
    """MultiStepLR([25, 30, 35], 0.5) stepped after each optimiser step: lr 6.25e-4 after 35 batches."""
    config = TrainConfig(protocol="tsd_paper")
    parameter = torch.nn.Parameter(torch.zeros(1))
    setup = configure([parameter], config, total_steps=1000)
    optimizer, schedule = setup["optimizer"], setup["lr_scheduler"]
    assert schedule["interval"] == "step" and isinstance(optimizer, torch.optim.Adam)
    lrs = []
    for _ in range(40):
        optimizer.step()
        schedule["scheduler"].step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[23] == pytest.approx(0.005) and lrs[24] == pytest.approx(0.0025)  # after 25 steps
    assert lrs[34] == pytest.approx(6.25e-4) and lrs[39] == pytest.approx(6.25e-4)


@pytest.mark.parametrize("name", ["tsd_paper", "kdig_paper", "subdistill_paper", "rekd_paper"])
def test_each_protocols_objectives_build(name):
    for objective in PROTOCOLS.get(name).objectives.values():
        specs = [
            dict(s, layers={"a": "b"}) if isinstance(s, dict) and s.get("layers") == "<pairs>" else s for s in objective
        ]
        assert build_terms(specs)


def test_a_recipe_can_name_a_protocol(tmp_path):
    from xdistill.recipe import default_recipe_path, parse_recipe

    data = yaml.safe_load(default_recipe_path().read_text())
    data["training"] = {"protocol": "tsd_paper", "epochs": 2}
    recipe = parse_recipe(data)
    assert recipe.training.lr == 0.005 and recipe.training.epochs == 2
    data["training"] = {"protocol": "tsd_papr"}
    from xdistill.recipe import RecipeError

    with pytest.raises(RecipeError, match=r"^training: unknown protocol 'tsd_papr'"):
        parse_recipe(data)


class Recorder(Method):
    """Records (dataset index, input) of every training batch after the engine's augmentations."""

    needs_teacher = False

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []

    def transform(self, batch, state):
        self.batches.append((batch.index.clone(), batch.x.detach().clone()))
        return batch


def official_crop_flip_candidates(image: torch.Tensor, padding: int = 4) -> list[torch.Tensor]:
    """Every output torchvision's RandomCrop(size, padding) then RandomHorizontalFlip can give for ``image``
    (C, H, W) in raw pixel space: zero padding, each of the (2p+1)² offsets, flipped or not."""
    _, h, w = image.shape
    padded = torch.nn.functional.pad(image, (padding, padding, padding, padding), value=0.0)
    out = []
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            crop = padded[:, top : top + h, left : left + w]
            out += [crop, crop.flip(-1)]
    return out


@pytest.mark.parametrize("name", ["subdistill_paper", "rekd_paper", "kdig_paper"])
def test_image_protocols_crop_and_flip_as_the_official_loaders(tmp_path, name):
    """subdistill: datasets/cifar100/original.py input_training_transformation, drop_last=True; rekd:
    data/retrieve_data_balanced.py transform_cifar_train (without the Resize(224) for a pretrained ViT)."""
    from xdistill.data import ArrayDataset
    from xdistill.engine import distill

    rng = np.random.default_rng(0)
    n = 66
    y = np.arange(n) % 2
    x = (rng.random(size=(n, 1, 8, 8)) + 1.0).astype(np.float32)  # every real pixel >= 1: padding is visible
    data = ArrayDataset(x, y, ["a", "b"], "blocks")
    recorder = Recorder()
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    result = distill(
        None,
        student,
        data,
        ["ce", recorder],
        protocol=name,
        epochs=2,
        batch_size=16,
        work_dir=tmp_path,
        progress=False,
        loggers=(),
        checkpoint=False,
    )
    assert result.config is not None and len(result.config.augment) == 2
    sizes = [len(index) for index, _ in recorder.batches]
    train_size = len(result.train_data)
    if name == "subdistill_paper":  # drop_last: every batch full, the remainder dropped each epoch
        assert sizes == [16] * (2 * (train_size // 16)) and train_size % 16  # the remainder dropped
    padded = changed = 0
    for index, batch in recorder.batches[:3]:
        for i, seen in zip(index.tolist(), batch):
            raw = result.train_data.x[i]  # (the index is into the training part, after the validation split)
            assert any(torch.equal(seen, c) for c in official_crop_flip_candidates(raw)), i
            padded += int((seen == 0).any())
            changed += int(not torch.equal(seen, raw))
    assert padded > 10 and changed > 20  # most samples shifted or flipped


def test_image_protocols_leave_series_unaugmented(tmp_path):
    from xdistill.data import ArrayDataset
    from xdistill.engine import distill

    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    data = ArrayDataset(rng.normal(size=(40, 1, 12)).astype(np.float32), y, ["a", "b"], "waves")
    for name in ("rekd_paper", "subdistill_paper", "kdig_paper"):
        recorder = Recorder()
        result = distill(
            None,
            build_model("fcn1d", 1, 2, width=0.125),
            data,
            ["ce", recorder],
            protocol=name,
            epochs=1,
            batch_size=8,
            work_dir=tmp_path / name,
            progress=False,
            loggers=(),
            checkpoint=False,
        )
        assert result.config is not None and result.config.augment == []
        for index, batch in recorder.batches:
            assert torch.equal(batch, result.train_data.x[index])
    given = TrainConfig(protocol="subdistill_paper", augment=[{"name": "hflip"}])
    from xdistill.protocols import with_family_augmentation

    assert with_family_augmentation(given, "image").augment == [{"name": "hflip"}]  # given beside it: kept


def test_the_tsd_teacher_computes_the_official_unrolled_lstm():
    """tsd-supplementary utils/fcnbaseline.py LSTMClassifierTeacherUnrolled: three one-layer LSTMs, each started
    from the final (h, c) of the one below. A hand-written loop of it with our weights gives our logits; the
    zero-state stack (nn.LSTM(num_layers=3)) with the same weights gives others."""
    torch.manual_seed(0)
    ours = build_model("lstm", 2, 3, hidden=12, layers=3, chained_states=True).double().eval()
    x = torch.randn(5, 2, 4, dtype=torch.float64)  # short: a zero or a chained initial state still shows
    sequence, state = x.transpose(1, 2), (torch.zeros(1, 5, 12, dtype=torch.float64),) * 2
    for layer in ours.stack:  # the official forward: out_t1, (hn1, cn1) = rnn1(x, (h0, c0)); rnn2(out_t1, (hn1, cn1))
        sequence, state = layer(sequence, state)
    official = ours.head(sequence[:, -1, :])
    with torch.no_grad():
        assert torch.allclose(ours(x), official, rtol=0, atol=1e-12)
        stacked = build_model("lstm", 2, 3, hidden=12, layers=3).double().eval()
        for k, layer in enumerate(ours.stack):
            for name, value in layer.named_parameters():
                getattr(stacked.lstm, name.replace("_l0", f"_l{k}")).copy_(value)
        stacked.head.load_state_dict(ours.head.state_dict())
        assert not torch.allclose(stacked(x), official, atol=1e-4)
    assert PROTOCOLS.get("tsd_paper").models["teacher"]["options"]["chained_states"] is True


def test_subdistill_protocol_draws_its_validation_split_at_random_as_random_split():
    """The official split is torch's random_split (not stratified): floor(0.2·n) held out by a seeded permutation,
    so class shares in the validation part vary; the stratified default keeps them."""
    import numpy as np

    from xdistill.config import TrainConfig
    from xdistill.data import ArrayDataset
    from xdistill.engine import training_part

    y = np.repeat([0, 1, 2], [70, 20, 11])
    data = ArrayDataset(np.zeros((len(y), 1, 4, 4), np.float32), y, ["a", "b", "c"], "d")
    config = TrainConfig(protocol="subdistill_paper")
    assert config.val_split == "random"
    train, val = training_part(data, config)
    assert len(val) == int(np.floor(0.2 * len(y))) and len(train) + len(val) == len(y)
    shares = [
        np.bincount(training_part(data, TrainConfig(protocol="subdistill_paper", seed=s))[1].y.numpy(), minlength=3)
        for s in range(20)
    ]
    assert len({tuple(c) for c in shares}) > 1  # class counts vary with the seed: not stratified
    stratified = training_part(data, TrainConfig(val_fraction=0.2, seed=3))[1]
    assert np.bincount(stratified.y.numpy()).tolist() == [14, 4, 2]


def test_the_crop_offsets_are_uniform_over_the_nine_shifts_and_half_the_images_are_flipped():
    """torchvision's RandomCrop(padding=4) draws each of the 9 × 9 offsets with probability 1/81 and
    RandomHorizontalFlip flips with probability 1/2: the keyed draws give the same distribution."""
    from xdistill.augment import apply_augmentations, build_augmentations
    from xdistill.methods.keyed_random import SampleStreams

    n, size = 4000, 9
    image = torch.arange(1.0, size * size + 1).view(1, 1, size, size)  # distinct pixels: the offset is readable
    x = image.expand(n, 1, size, size).clone()
    index = torch.arange(n)
    augmentations = build_augmentations([{"name": "random_crop", "padding": 4}, {"name": "hflip"}])
    seen = apply_augmentations(augmentations, x, lambda salt: SampleStreams(index, 7, 1, salt))
    candidates = official_crop_flip_candidates(image[0])  # (top, left, flipped) in row-major order, flip last
    shifts, flips = np.zeros((9, 9)), 0
    for out in seen:
        k = next(k for k, c in enumerate(candidates) if torch.equal(out, c))
        top, left, flipped = k // 18, (k // 2) % 9, k % 2
        shifts[top, left] += 1
        flips += flipped
    for axis in (0, 1):
        share = shifts.sum(axis) / n
        assert np.abs(share - 1 / 9).max() < 0.02, share  # each of the shifts -4..4 about 1/9 along each axis
    assert abs(flips / n - 0.5) < 0.03
    from scipy.stats import chisquare

    assert chisquare(shifts.ravel()).pvalue > 0.001  # the 81 joint offsets: no detectable departure from uniform


def test_drop_last_with_a_training_part_smaller_than_a_batch_is_refused_naming_the_sizes(tmp_path):
    from xdistill.data import ArrayDataset
    from xdistill.engine import distill

    y = np.arange(30) % 2
    data = ArrayDataset(np.zeros((30, 1, 8, 8), np.float32), y, ["a", "b"], "tiny")
    with pytest.raises(ValueError, match=r"drop_last: the training part has 24 samples, fewer than one batch of 64"):
        distill(
            None,
            build_model("cnn", 1, 2, width=0.25),
            data,
            ["ce"],
            protocol="subdistill_paper",
            work_dir=tmp_path,
            progress=False,
            loggers=(),
            checkpoint=False,
        )
