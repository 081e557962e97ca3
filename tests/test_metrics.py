import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.metrics import f1_score
from torch import nn

from xdistill import metrics as M


def test_spearman_hand_values_and_ties():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 2.0, 3.0]])
    b = torch.tensor([[10.0, 20.0, 30.0, 40.0], [4.0, 3.0, 2.0, 1.0], [5.0, 6.0, 7.0, 8.0]])
    got = M.spearman(a, b)
    # ranks of row 3: a -> [1.5, 1.5, 3, 4], b -> [1, 2, 3, 4]: pearson = 0.9486832980505138
    assert got[0] == pytest.approx(1.0) and got[1] == pytest.approx(-1.0)
    assert got[2] == pytest.approx(0.9486832980505138)
    assert got[2] == pytest.approx(spearmanr(a[2], b[2]).statistic)


def test_spearman_constant_row_is_nan_and_summary_skips_it():
    got = M.spearman(torch.tensor([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]]), torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]))
    assert math.isnan(got[0]) and got[1] == pytest.approx(-1.0)
    s = M.Summary.of(got)
    assert (s.mean, s.std, s.n) == (pytest.approx(-1.0), 0.0, 1)


def test_topk_focus_and_iou_by_hand():
    teacher = torch.tensor([[0.9, 0.1, 0.5, 0.0]])  # top-2: parts 0 and 2
    student = torch.tensor([[1.0, 3.0, -1.0, 5.0]])  # mass 10; inside teacher top-2: 1 + 1 = 2
    assert M.topk_focus(student, teacher, k=2).item() == pytest.approx(0.2)
    assert M.topk_focus_ratio(student, teacher, k=2).item() == pytest.approx(2 / 8)  # inside 2, outside 3 + 5
    assert M.topk_focus_ratio(torch.tensor([[1.0, 0.0, 2.0, 0.0]]), teacher, k=2).isnan()  # nothing outside
    # student top-2: parts 3 and 1 -> no overlap with {0, 2}
    assert M.topk_iou(teacher, student, k=2).item() == 0.0
    assert M.topk_iou(teacher, teacher.flip(1) * 0 + torch.tensor([[1.0, 0.0, 2.0, 0.5]]), k=2).item() == 1.0
    # k=3: teacher {0,2,1}, student {3,1,0}: |∩| = 2, |∪| = 4
    assert M.topk_iou(teacher, student, k=3).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="k must be between"):
        M.topk_focus(student, teacher, k=5)


def test_cosine_kl_agreement_by_hand():
    assert M.cosine(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]])).item() == pytest.approx(1 / math.sqrt(2))
    t = torch.log(torch.tensor([[0.5, 0.5]]))
    s = torch.log(torch.tensor([[0.25, 0.75]]))
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert M.kl_divergence(t, s).item() == pytest.approx(expected)
    assert M.kl_divergence(t, t).item() == pytest.approx(0.0)
    agree = M.top1_agreement(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[2.0, 1.0], [3.0, 1.0]]))
    assert agree.tolist() == [1.0, 0.0]


def test_accuracy_and_macro_f1_match_sklearn():
    rng = np.random.default_rng(0)
    labels = torch.from_numpy(rng.integers(0, 4, 200))
    preds = torch.from_numpy(rng.integers(0, 5, 200))  # class 4 never true: sklearn still counts it
    assert M.accuracy(preds, labels) == pytest.approx((preds == labels).float().mean().item())
    assert M.macro_f1(preds, labels) == pytest.approx(f1_score(labels, preds, average="macro"))
    # by hand: labels [0,0,1,1], preds [0,1,1,1] -> F1_0 = 2/3, F1_1 = 0.8, macro = 0.7333
    assert M.macro_f1(torch.tensor([0, 1, 1, 1]), torch.tensor([0, 0, 1, 1])) == pytest.approx((2 / 3 + 0.8) / 2)


def test_cost_metrics_by_hand():
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    student = nn.Sequential(nn.Flatten(), nn.Linear(10, 3))
    assert M.parameter_count(teacher) == 10 * 20 + 20 + 20 * 3 + 3
    assert M.compression_ratio(teacher, student) == pytest.approx(283 / 33)
    # torch counts 2 flops per multiply-add of a matmul
    assert M.flops(student, torch.zeros(4, 10)) == 2 * 4 * 10 * 3
    assert M.latency(student, torch.zeros(1, 10), repeats=3) > 0


def test_evaluate_pair_identical_models_align_perfectly(conv_net, series):
    y = torch.tensor([0, 1, 2, 0])
    config = M.AlignmentConfig(explainer="saliency", parts="timestep", k=3)
    result = M.evaluate_pair(conv_net, conv_net, series, y, config, cost=False)
    for key in ("agreement", "logit_spearman", "saliency_spearman", "topk_iou", "cosine"):
        assert result[key].mean == pytest.approx(1.0), key
    assert result["kl"].mean == pytest.approx(0.0, abs=1e-12)
    assert result["teacher_accuracy"] == result["student_accuracy"]


def test_evaluate_pair_different_models_report_cost(conv_net, series):
    from conftest import smooth_conv_net

    torch.manual_seed(5)
    other = smooth_conv_net()
    for p in other.parameters():
        nn.init.normal_(p, std=0.5)
    result = M.evaluate_pair(
        conv_net, other, series, torch.zeros(4, dtype=torch.long), M.AlignmentConfig(explainer="saliency", k=3)
    )
    assert result["saliency_spearman"].mean < 0.99
    assert result["compression"] == pytest.approx(1.0)
    assert result["speedup_b64"] > 0
    json_ready = M.to_jsonable(result)
    assert set(json_ready["agreement"]) == {"mean", "std", "n"}


def test_alignment_under_a_list_of_explainers_and_their_agreement_on_the_teacher(conv_net, series, tmp_path):
    """`also`: each further explainer measures alignment over the same parts; the teacher's maps under each pair
    of explainers are compared (the context for an alignment number); the teacher side keeps them."""
    from conftest import smooth_conv_net

    from xdistill import explain as xe
    from xdistill.parts import to_parts

    y = torch.tensor([0, 1, 2, 0])
    config = M.AlignmentConfig(
        explainer="saliency",
        parts="window",
        part_options={"size": 4},
        k=2,
        flip_steps=0,
        also=[
            {"explainer": "occlusion", "explainer_options": {"window": 4, "stride": 4}},
            {"explainer": "integrated_gradients", "explainer_options": {"n_steps": 16}},
        ],
    )
    same = M.to_jsonable(M.evaluate_pair(conv_net, conv_net, series, y, config, cost=False))
    assert list(same["explainers"]) == ["saliency", "occlusion", "integrated_gradients"]
    for label, figures in same["explainers"].items():  # a student identical to its teacher aligns under every one
        assert figures["saliency_spearman"]["mean"] == pytest.approx(1.0), label
    target = M.predict(conv_net, series).argmax(1)
    maps = {
        name: to_parts(xe.explain(conv_net, series, target, method=name, **opts).detach(), "window", size=4)
        for name, opts in (("saliency", {}), ("occlusion", {"window": 4, "stride": 4}))
    }
    by_hand = M.spearman(maps["saliency"], maps["occlusion"]).mean().item()
    assert same["teacher_explainer_agreement"]["saliency vs occlusion"]["mean"] == pytest.approx(by_hand, abs=1e-9)
    assert set(same["teacher_explainer_agreement"]) == {
        "saliency vs occlusion",
        "saliency vs integrated_gradients",
        "occlusion vs integrated_gradients",
    }
    torch.manual_seed(5)
    other = smooth_conv_net()
    for p in other.parameters():
        nn.init.normal_(p, std=0.5)
    side = M.compute_teacher_side(conv_net, series, y, config, cost=False)
    side.save(tmp_path / "side", {"k": 1})
    loaded = M.TeacherSide.load(tmp_path / "side", {"k": 1})
    assert set(loaded.other_parts) == {"occlusion", "integrated_gradients"}
    assert torch.equal(loaded.other_parts["occlusion"], side.other_parts["occlusion"])
    shared = M.evaluate_pair(conv_net, other, series, y, config, cost=False, teacher_side=loaded)
    fresh = M.evaluate_pair(conv_net, other, series, y, config, cost=False)
    for label in ("saliency", "occlusion", "integrated_gradients"):
        assert shared["explainers"][label]["saliency_spearman"].mean == pytest.approx(
            fresh["explainers"][label]["saliency_spearman"].mean, abs=1e-9
        )
    assert shared["explainers"]["saliency"]["saliency_spearman"].mean == pytest.approx(
        shared["saliency_spearman"].mean
    )  # the main explainer's row is the headline figure
    assert shared["explainers"]["occlusion"]["saliency_spearman"].mean < 0.99


def test_a_recipe_lists_further_explainers_and_a_bad_one_is_named():
    import yaml

    from xdistill.recipe import RecipeError, default_recipe_path, parse_recipe

    data = yaml.safe_load(default_recipe_path().read_text())
    data["evaluation"]["also"] = [
        {"explainer": "integrated_gradients", "explainer_options": {"n_steps": 16}},
        {"explainer": "saliency"},
    ]
    assert [e.explainer for e in parse_recipe(data).evaluation.also] == ["integrated_gradients", "saliency"]
    data["evaluation"]["also"][1] = {"explainer": "salincy"}
    with pytest.raises(RecipeError, match=r"^evaluation.also\[1\].explainer: unknown"):
        parse_recipe(data)
    data["evaluation"]["also"][1] = {"explainer": "saliency", "explainer_options": {"n_stesp": 3}}
    with pytest.raises(RecipeError, match=r"^evaluation.also\[1\].explainer_options: "):
        parse_recipe(data)
