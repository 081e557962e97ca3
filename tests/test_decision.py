"""The report's decision: which student to ship, by its stated rule, on generated results over seeds."""

from xdistill.files import read_json
from xdistill.report import ReportMeta, build_report
from xdistill.report.decision import decide
from xdistill.report.verdict import aggregate, verdicts


def seeds_of(name, accuracy, saliency, ig=None, params=None, methods=None):
    """One student's per-seed results: accuracy and saliency Spearman per seed (and under a second explainer)."""
    out = []
    for i, (acc, sal) in enumerate(zip(accuracy, saliency)):
        result = {
            "student": name,
            "student_accuracy": acc,
            "teacher_accuracy": 0.99,
            "saliency_spearman": {"mean": sal, "std": 0.2, "n": 100},
            "student_params": params or {"alone": 100, "kd": 80, "tsd": 120}.get(name, 90),
            "student_flops": 1000,
            "class_names": ["a", "b"],
        }
        if methods is not None:
            result["methods"] = methods
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
    assert d.headline.startswith("Ship tsd: as accurate as kd, and its explanations are the closest to the teacher's")
    assert "under occlusion (p = " in d.headline and d.pick == "tsd"
    assert "kd and tsd are level on accuracy (the gaps are within the spread)." in d.reasons and not d.warnings


def test_in_a_shortcut_study_a_student_right_only_while_the_cue_agrees_is_not_a_candidate():
    """Level on plain accuracy, the cheaper student that follows the spurious cue would win on parameters; accuracy
    where the cue lies decides instead, and the rule says so."""
    alone = seeds_of("alone", [0.97, 0.98, 0.97, 0.98], [0.5, 0.5, 0.5, 0.5], params=50)
    fitnets = seeds_of("fitnets", [0.98, 0.97, 0.98, 0.97], [0.5, 0.5, 0.5, 0.5], params=90)
    for result, flipped in zip(alone + fitnets, [0.66, 0.70, 0.64, 0.69, 0.97, 0.95, 0.96, 0.98]):
        result["student_accuracy_flipped"] = flipped
    d = decision(alone, fitnets)
    assert d.pick == "fitnets" and d.headline.startswith("Ship fitnets: more accurate where the cue lies than")
    assert any(r.startswith("alone is less accurate where the cue lies than fitnets by 0.29") for r in d.reasons)
    assert "that accuracy replaces plain accuracy" in d.rule
    level = [0.97, 0.98, 0.97, 0.98]
    plain = decision(seeds_of("alone", level, [0.5] * 4, params=50), seeds_of("fitnets", level, [0.5] * 4, params=90))
    assert plain.pick == "alone" and "spurious cue" not in plain.rule  # the same study without the cue's figures


def test_explainers_that_disagree_still_pick_one_by_the_stated_order():
    d = decision(
        seeds_of("kd", [0.97, 0.98, 0.97, 0.98], [0.50, 0.52, 0.49, 0.51], ig=[0.80, 0.82, 0.79, 0.81]),
        seeds_of("tsd", [0.98, 0.97, 0.98, 0.97], [0.70, 0.73, 0.69, 0.72], ig=[0.60, 0.61, 0.58, 0.62]),
    )
    assert d.pick == "kd" and "the explainers disagree" in d.headline
    assert d.headline.endswith("kd has the fewest parameters (80).")
    assert "integrated gradients" in " ".join(d.reasons) and "integrated_gradients" not in " ".join(d.reasons)


def test_level_students_still_name_one_the_smallest():
    d = decision(
        seeds_of("kd", [0.97, 0.98, 0.97, 0.98], [0.50, 0.62, 0.49, 0.61]),
        seeds_of("tsd", [0.98, 0.97, 0.98, 0.97], [0.60, 0.52, 0.59, 0.51]),
    )
    assert d.pick == "kd" and d.headline.startswith("Ship kd: as accurate as tsd, and none explains more like")
    assert d.headline.endswith("kd has the fewest parameters (80).")


def test_students_level_on_everything_are_picked_by_the_simplest_objective_in_plain_words():
    """The default study's case: same size, same accuracy, no explainer separates them."""
    same = {"params": 4386}
    d = decision(
        seeds_of(
            "tsd",
            [0.97, 0.98, 0.97, 0.98],
            [0.50, 0.62, 0.49, 0.61],
            [0.5, 0.6, 0.5, 0.6],
            methods=["ce", {"name": "tsd"}],
            **same,
        ),
        seeds_of(
            "alone", [0.98, 0.97, 0.98, 0.97], [0.60, 0.52, 0.59, 0.51], [0.6, 0.5, 0.6, 0.5], methods=["ce"], **same
        ),
        seeds_of(
            "kd",
            [0.97, 0.97, 0.98, 0.98],
            [0.55, 0.57, 0.54, 0.56],
            [0.55, 0.55, 0.56, 0.54],
            methods=["hinton"],
            **same,
        ),
    )
    assert d.pick == "alone"
    assert d.headline == (
        "Ship alone: as accurate as tsd and kd, and none explains more like the teacher under occlusion or "
        "integrated gradients; all have 4,386 parameters and 1,000 operations per sample, so alone wins as the "
        "simplest objective: it trains without a teacher."
    )
    words = d.headline + " ".join(d.reasons)
    assert "told apart" not in words and "_" not in words


def test_when_every_student_is_far_below_the_teacher_none_is_ready_and_the_least_bad_is_named():
    d = decision(  # the teacher is at 0.99: 13.5-27.5 points above every student
        seeds_of("alone", [0.72, 0.73, 0.71, 0.72], [0.5, 0.6, 0.5, 0.6]),
        seeds_of("tsd", [0.85, 0.86, 0.85, 0.86], [0.5, 0.5, 0.6, 0.6]),
    )
    assert d.pick is None and d.least_bad == "tsd"
    assert d.headline.startswith(
        "None of the students is ready to ship: every student is 14–27 points below the teacher's accuracy (0.990). "
        "The least bad is tsd: more accurate than every other student (p = "
    )
    assert len(d.warnings) == 2


def test_one_student_close_to_the_teacher_is_shipped_despite_weaker_ones():
    d = decision(
        seeds_of("alone", [0.72, 0.73, 0.71, 0.72], [0.5, 0.6, 0.5, 0.6]),
        seeds_of("kd", [0.97, 0.98, 0.975, 0.985], [0.5, 0.5, 0.6, 0.6]),
    )
    assert d.pick == "kd" and d.headline.startswith("Ship kd: more accurate than every other student (p = ")


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
    assert summary["decision"]["pick"] == "kd" and "tsd reaches 0.708" in summary["decision"]["warnings"][0]
    assert 'data-pick="kd"' in (tmp_path / "report.html").read_text()
    assert 'class="best"' not in (tmp_path / "report.html").read_text()  # a tie is no win: nothing bold
