"""The report's decision: which student to ship, by its stated rule, on generated results over seeds."""

from xdistill.files import read_json
from xdistill.report import ReportMeta, build_report
from xdistill.report.decision import decide
from xdistill.report.verdict import aggregate, verdicts


def seeds_of(name, accuracy, saliency, ig=None):
    """One student's per-seed results: accuracy and saliency Spearman per seed (and under a second explainer)."""
    out = []
    for i, (acc, sal) in enumerate(zip(accuracy, saliency)):
        result = {
            "student": name,
            "student_accuracy": acc,
            "teacher_accuracy": 0.99,
            "saliency_spearman": {"mean": sal, "std": 0.2, "n": 100},
            "student_params": {"alone": 100, "kd": 80, "tsd": 120}.get(name, 90),
            "class_names": ["a", "b"],
        }
        if ig is not None:
            result["explainers"] = {
                "occlusion": {"saliency_spearman": {"mean": sal, "std": 0.2, "n": 100}},
                "integrated_gradients": {"saliency_spearman": {"mean": ig[i], "std": 0.2, "n": 100}},
            }
        out.append(result)
    return out


def decision(*students):
    per_seed = {s[0]["student"]: s for s in students}
    results = [aggregate(s) for s in students]
    return decide(results, per_seed, 0.99, "occlusion", 2)


def test_a_more_accurate_student_is_picked():
    d = decision(
        seeds_of("alone", [0.90, 0.91, 0.92, 0.90], [0.5, 0.6, 0.5, 0.6]),
        seeds_of("kd", [0.97, 0.98, 0.975, 0.985], [0.5, 0.5, 0.6, 0.6]),
    )
    assert d.pick == "kd" and d.headline.startswith("Ship kd: more accurate")
    assert any(r.startswith("alone is less accurate than kd") for r in d.reasons)
    assert any(w.startswith("alone reaches 0.907") for w in d.warnings)  # 8 points below the teacher


def test_among_equally_accurate_students_the_one_that_aligns_best_is_picked():
    d = decision(
        seeds_of("kd", [0.97, 0.98, 0.97, 0.98], [0.50, 0.52, 0.49, 0.51]),
        seeds_of("tsd", [0.98, 0.97, 0.98, 0.97], [0.70, 0.73, 0.69, 0.72]),
    )
    assert d.pick == "tsd" and "reasons most like the teacher" in d.headline
    assert "Accuracy cannot tell kd and tsd apart." in d.reasons and not d.warnings


def test_explainers_that_disagree_pick_no_student():
    d = decision(
        seeds_of("kd", [0.97, 0.98, 0.97, 0.98], [0.50, 0.52, 0.49, 0.51], ig=[0.80, 0.82, 0.79, 0.81]),
        seeds_of("tsd", [0.98, 0.97, 0.98, 0.97], [0.70, 0.73, 0.69, 0.72], ig=[0.60, 0.61, 0.58, 0.62]),
    )
    assert d.pick is None and "the explainers disagree" in d.headline


def test_indistinguishable_students_are_said_to_be_so_and_the_smallest_named():
    d = decision(
        seeds_of("kd", [0.97, 0.98, 0.97, 0.98], [0.50, 0.62, 0.49, 0.61]),
        seeds_of("tsd", [0.98, 0.97, 0.98, 0.97], [0.60, 0.52, 0.59, 0.51]),
    )
    assert d.pick is None and d.headline.startswith("No student can be told apart")
    assert "the smallest candidate is kd (80 parameters)" in d.headline


def test_a_student_at_chance_is_flagged():
    d = decision(
        seeds_of("alone", [0.50, 0.52, 0.49, 0.51], [0.1, 0.2, 0.1, 0.2]),
        seeds_of("kd", [0.97, 0.98, 0.975, 0.985], [0.5, 0.5, 0.6, 0.6]),
    )
    assert any("chance level" in w for w in d.warnings)


def test_ties_read_as_ties_and_only_told_apart_leads_are_bold(tmp_path):
    tie = seeds_of("kd", [0.97, 0.98, 0.97, 0.98], [0.5, 0.5, 0.5, 0.5])
    same = [dict(r, student="alone") for r in tie]
    ahead = seeds_of("tsd", [0.70, 0.72, 0.71, 0.70], [0.5, 0.5, 0.5, 0.5])
    per_seed = {"kd": tie, "alone": same, "tsd": ahead}
    results = [aggregate(v) for v in per_seed.values()]
    accuracy = next(v for v in verdicts(results, per_seed) if v.metric == "student_accuracy")
    assert accuracy.lead == 0 and " tie " in accuracy.sentence() and "ahead" not in accuracy.sentence()
    meta = ReportMeta(
        "tie",
        "synthetic",
        "fcn1d",
        {"explainer": "occlusion", "parts": "window", "k": 3, "target": "teacher"},
        seeds=[0, 1, 2, 3],
    )
    build_report(tmp_path, meta, results, per_seed=per_seed)
    summary = read_json(tmp_path / "figures.json")
    assert summary["decision"]["pick"] is None and "tsd reaches 0.708" in summary["decision"]["warnings"][0]
    assert 'class="best"' not in (tmp_path / "report.html").read_text()  # a tie is no win: nothing bold
