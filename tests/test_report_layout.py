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
