"""The report's layout without a browser: a short title for a data set in a deep folder, the teacher's spread over
seeds, results tables narrow enough for a laptop, every zoomed axis marked."""

from unittest import mock

from xdistill.files import read_json
from xdistill.report import ReportMeta, build_report, short_name
from xdistill.report import figures as report_figures
from xdistill.report.verdict import aggregate

EVALUATION = {"explainer": "integrated_gradients", "parts": "window", "k": 3, "target": "teacher"}


def seeds_of(name, accuracies, teacher=(0.743, 0.829)):
    return [
        {
            "student": name,
            "student_accuracy": a,
            "teacher_accuracy": t,
            "saliency_spearman": {"mean": 0.5 + 0.01 * i, "std": 0.1, "n": 50},
            "flip_auc_student_teacher_order": {"mean": -0.3 - 0.1 * i, "std": 0.2, "n": 50},
            "student_params": 100,
            "teacher_params": 1000,
            "class_names": ["a", "b"],
        }
        for i, (a, t) in enumerate(zip(accuracies, teacher))
    ]


def test_a_file_data_set_is_titled_by_its_file_name_only():
    assert short_name("ucr:GunPoint") == "ucr:GunPoint"
    assert short_name("csv:/a/very/deep/folder/measurements_train.csv") == "csv:measurements_train.csv"
    assert short_name("images:C:\\data\\cats") == "images:cats"


def test_the_teacher_shows_its_spread_over_seeds_and_the_full_data_set_spec_stays_in_the_details(tmp_path):
    per_seed = {"kd": seeds_of("kd", [0.70, 0.80]), "alone": seeds_of("alone", [0.69, 0.81])}
    results = [aggregate(v) for v in per_seed.values()]
    spec = "csv:/a/very/deep/folder/measurements_train.csv"
    build_report(tmp_path, ReportMeta("deep", spec, "fcn1d", EVALUATION, seeds=[0, 1]), results, per_seed=per_seed)
    page = (tmp_path / "report.html").read_text()
    assert "<h1>deep — csv:measurements_train.csv</h1>" in page and f"Data set {spec}." in page
    assert "<td>0.786 ± 0.061</td>" in page  # the teacher's 0.743 and 0.829: mean ± std, as the students'
    assert read_json(tmp_path / "figures.json")["teacher"]["accuracy_over_seeds"]["std"] > 0.06
    tables = page.split('<div class="scroll">')[1:3]  # accuracy and alignment; then size and speed
    assert "accuracy" in tables[0] and "params" not in tables[0] and "params" in tables[1]
    assert "integrated gradients" in page and "integrated_gradients attributions" not in page


def test_every_zoomed_axis_says_so_even_without_a_natural_floor():
    titles = []
    real = report_figures._pyplot().Axes.set_title

    def spy(ax, text, *args, **kwargs):
        titles.append(text)
        return real(ax, text, *args, **kwargs)

    results = [aggregate(seeds_of("kd", [0.97, 0.98])), aggregate(seeds_of("alone", [0.96, 0.99]))]
    with mock.patch.object(report_figures._pyplot().Axes, "set_title", spy):
        report_figures.metric_panels(results, "seeds")
    deletion = next(t for t in titles if t.startswith("deletion AUC"))
    assert "(axis zoomed to the bars: " in deletion
    accuracy = next(t for t in titles if t.startswith("accuracy"))
    assert "(axis cut: starts at " in accuracy


SHORTCUT = {
    "student_accuracy_flipped": (0.91, 0.87),
    "teacher_accuracy_flipped": (0.95, 0.93),
    "student_accuracy_none": (0.94, 0.92),
    "teacher_accuracy_none": (0.96, 0.94),
    "cue_reliance": (0.05, 0.09),
    "teacher_cue_reliance": (0.02, 0.04),
}


def test_a_shortcut_benchmark_gets_its_own_block_mean_and_std_over_seeds(tmp_path):
    per_seed = {"kd": seeds_of("kd", [0.90, 0.88]), "alone": seeds_of("alone", [0.70, 0.72])}
    for name, seeds in per_seed.items():
        for i, result in enumerate(seeds):
            result.update({key: values[i] - (0.4 if name == "alone" else 0.0) for key, values in SHORTCUT.items()})
    results = [aggregate(v) for v in per_seed.values()]
    build_report(
        tmp_path,
        ReportMeta("shortcut", "shortcut_series", "fcn1d", EVALUATION, seeds=[0, 1]),
        results,
        per_seed=per_seed,
    )
    page = (tmp_path / "report.html").read_text()
    block = page.split('<h2 id="shortcut">Shortcut test</h2>')[1].split("<h2")[0]
    assert "stays right when the spurious cue lies" in block
    assert "<th>right, cue lies</th>" in block and "<th>follows lying cue</th>" in block
    assert "<td>teacher</td><td>0.940 ± 0.014</td>" in block  # the teacher's mean ± std over the seeds
    assert "<td>kd</td><td>0.890 ± 0.028</td><td>0.930 ± 0.014</td><td>0.070 ± 0.028</td>" in block
    assert "<td>alone</td><td>0.490 ± 0.028</td>" in block
    summary = (tmp_path / "report.md").read_text()
    assert "## Shortcut test" in summary and "| kd | 0.890 ± 0.028 | 0.930 ± 0.014 | 0.070 ± 0.028 |" in summary


def test_no_shortcut_block_without_its_figures(tmp_path):
    results = [aggregate(seeds_of("kd", [0.90, 0.88]))]
    build_report(tmp_path, ReportMeta("plain", "ucr:GunPoint", "fcn1d", EVALUATION, seeds=[0, 1]), results)
    assert "Shortcut test" not in (tmp_path / "report.html").read_text()
    assert "Shortcut test" not in (tmp_path / "report.md").read_text()


def test_an_audit_report_claims_nothing_about_training_and_says_how_inputs_were_normalised(tmp_path):
    results = [{**seeds_of("student", [0.9])[0], "teacher_accuracy": 0.95}]
    inputs = "inputs z-normalised by default, each series on its own (normalize: auto; none keeps them)"
    meta = ReportMeta("audit", "ucr:GunPoint", "fcn1d", EVALUATION, trained_here=False, inputs=inputs)
    build_report(tmp_path, meta, results)
    for name in ("report.html", "report.md"):
        text = (tmp_path / name).read_text()
        assert "training data alone" not in text and "audit compares two trained models it did not train" in text
        assert f"Inputs: {inputs}." in text
    assert read_json(tmp_path / "figures.json")["inputs"] == inputs
    build_report(tmp_path / "study", ReportMeta("study", "ucr:GunPoint", "fcn1d", EVALUATION), results)
    assert "training data alone" in (tmp_path / "study" / "report.md").read_text()  # a study trained them: it knows
    assert "inputs" not in read_json(tmp_path / "study" / "figures.json")
