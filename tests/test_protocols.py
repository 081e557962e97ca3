"""The papers' protocols: docs/protocols.md read against the presets, and the schedule they rely on."""

import re
from pathlib import Path

import pytest
import torch
import yaml

from xdistill.config import TrainConfig, resolve
from xdistill.methods import build_terms
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
