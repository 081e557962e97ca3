"""benchmarks/baselines.py: one (dataset, role, seed) run reports eval-mode train and validation accuracy."""

from conftest import load_benchmark


def test_one_run_reports_train_and_validation_accuracy(tmp_path, monkeypatch):
    baselines = load_benchmark("baselines")
    family_default = baselines.resolve

    def short(spec, family, role):  # the family default, cut to a few steps, with a validation split
        return family_default(spec, family, role).model_copy(update={"epochs": None, "steps": 20, "val_fraction": 0.2})

    monkeypatch.setattr(baselines, "resolve", short)
    result = baselines.run_one("ucr:ItalyPowerDemand", "student", 0, tmp_path)
    assert 0.0 <= result["train_acc"] <= 1.0
    assert result["val_acc"] is not None and 0.0 <= result["val_acc"] <= 1.0
    assert 0.0 <= result["test_acc"] <= 1.0
    assert result["params"] > 0
    saved = baselines.save_result(tmp_path, "ucr:ItalyPowerDemand|student|0", result)
    assert "train acc" in baselines.table({**saved, "ucr:ItalyPowerDemand|teacher|0": result}, [0])
