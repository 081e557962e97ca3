"""TSD as published (arXiv 2601.04263) against a hand-written loop of its equations."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xdistill.data import ArrayDataset
from xdistill.engine import distill
from xdistill.methods import build_method, build_terms
from xdistill.methods.base import Batch, PrepareContext, Step, StepState
from xdistill.methods.keyed_random import SampleStreams
from xdistill.methods.tsd import (
    PerturbationTSD,
    WindowSaliencyTSD,
    forward_copies,
    normalize_saliency,
    perturbation_saliency,
    saliency_loss,
    sample_perturbations,
)
from xdistill.metrics import average_precision, macro_auc_pr
from xdistill.models import build_model


def small_lstm(seed: int = 0, hidden: int = 8, layers: int = 1, classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("lstm", 2, classes, hidden=hidden, layers=layers).double()


def loop_saliency(model, x, donors_x, starts, window, tau):
    """The published equations one sample and one window at a time."""
    B, K = starts.shape
    rows = []
    for i in range(B):
        p = F.softmax(model(x[i : i + 1]) / tau, dim=1)[0]
        for k in range(K):
            s = int(starts[i, k])
            copy = x[i].clone()
            copy[:, s : s + window] = donors_x[i, k, :, s : s + window]
            q = F.softmax(model(copy[None]) / tau, dim=1)[0]
            rows.append(torch.stack([tau**2 * p[c] * (torch.log(p[c]) - torch.log(q[c])) for c in range(len(p))]))
    return torch.stack(rows).view(B, K, -1)  # (stacked, not written into a buffer: it keeps the graph)


def test_perturbation_saliency_equals_the_per_sample_per_window_loop():
    model = small_lstm(layers=2).eval()
    torch.manual_seed(1)
    x, train_x = torch.randn(3, 2, 20, dtype=torch.float64), torch.randn(12, 2, 20, dtype=torch.float64)
    y, train_y = torch.tensor([0, 1, 2]), torch.arange(12) % 3
    donors, starts = sample_perturbations(y, train_y, K=6, window=4, length=20)
    with torch.no_grad():
        fast = perturbation_saliency(model, x, train_x[donors], starts, window=4, tau=8.0, chunk=5)
        slow = loop_saliency(model, x, train_x[donors], starts, 4, 8.0)
        summed = perturbation_saliency(model, x, train_x[donors], starts, window=4, tau=8.0, reduce="sum")
    assert fast.shape == (3, 6, 3)
    assert torch.allclose(fast, slow, atol=1e-6)
    assert torch.allclose(summed, slow.sum(-1), atol=1e-6)
    kl = F.kl_div(
        F.log_softmax(model(train_x[donors][0, 0:1] * 0 + x[:1]) / 8, 1),
        F.softmax(model(x[:1]) / 8, 1),
        reduction="sum",
    )
    assert kl.abs() < 1e-12  # an unperturbed copy has zero saliency: the terms are those of KL(p(x) || p(x~))


def test_donors_are_of_another_class_and_starts_distinct_and_in_range():
    g = torch.Generator().manual_seed(0)
    train_y = torch.tensor([0] * 30 + [1] * 4 + [2] * 40)
    y = torch.tensor([0, 1, 2, 1])
    donors, starts = sample_perturbations(y, train_y, K=20, window=10, length=50, generator=g)
    assert donors.shape == starts.shape == (4, 20)
    for i in range(4):
        assert (train_y[donors[i]] != y[i]).all()
        assert len(set(starts[i].tolist())) == 20 and starts[i].min() >= 0 and starts[i].max() < 40
        assert len(set(donors[i].tolist())) == 20  # enough donors of other classes: without replacement
    few, _ = sample_perturbations(
        torch.tensor([2]), torch.tensor([0, 0, 1, 2, 2]), K=8, window=2, length=20, generator=g
    )
    assert set(few[0].tolist()) <= {0, 1, 2} and few.shape == (1, 8)  # only 3 donors: drawn with replacement
    capped, capped_starts = sample_perturbations(torch.tensor([0]), train_y, K=50, window=10, length=15, generator=g)
    assert capped.shape == (1, 5) and sorted(capped_starts[0].tolist()) == [0, 1, 2, 3, 4]  # K capped at T - w


def test_normalisation_and_loss():
    s = torch.tensor([[[2.0, -1.0], [4.0, 0.0]]])
    assert torch.allclose(normalize_saliency(s), s / (3.0 + 1e-8))
    t = torch.randn(2, 5, 3)
    assert saliency_loss(t, t) == 0
    assert saliency_loss(t * 7.0, t) < 1e-6  # scale-free: the normalisation removes a global factor
    expected = F.smooth_l1_loss(normalize_saliency(t + 1), normalize_saliency(t))
    assert torch.allclose(saliency_loss(t + 1, t), expected)


def test_the_tsd_term_is_the_published_term_and_the_preset_adds_ce_with_lambda():
    teacher, student = small_lstm(0, layers=2), small_lstm(1)
    train_x = torch.randn(24, 2, 16, dtype=torch.float64)
    train_y = torch.arange(24) % 3
    terms = build_terms([{"name": "tsd_published", "perturbations": 5, "window": 3, "lam": 10.0}])
    assert [(t.name, t.weight) for t in terms] == [("ce", 1.0), ("tsd", 10.0)]
    ce, method = terms[0], terms[1].double()
    assert isinstance(method, PerturbationTSD) and method.tau == 8.0
    method.prepare(PrepareContext(teacher, student, train_x, train_y, "fp"))
    x, y, index = train_x[:6], train_y[:6], torch.arange(6)
    state = StepState(7, 100, 0)
    s_logits, t_logits = student(x), teacher(x).detach()
    step = Step(Batch(x, y, index), student, teacher, s_logits, t_logits, state=state)
    term = method.loss(step)
    # the draws come from per-sample streams keyed by (seed, salt, step, dataset index): the only part of the
    # library this check reuses (random numbers, not equations); both saliencies are the hand-written loop
    donors, starts = sample_perturbations(y, train_y, 5, 3, 16, uniform=state.streams(index, method.salt))
    with torch.no_grad():
        t_s = loop_saliency(teacher, x, train_x[donors], starts, 3, 8.0)
    s_s = loop_saliency(student, x, train_x[donors], starts, 3, 8.0)
    expected = F.smooth_l1_loss(s_s / (s_s[s_s > 0].mean() + 1e-8), t_s / (t_s[t_s > 0].mean() + 1e-8))
    assert torch.allclose(term, expected, atol=1e-9)
    # the preset's objective is the previous tsd method's total: CE + λ · L_TSD
    total = ce.weight * ce.loss(step) + method.weight * term
    assert torch.allclose(total, F.cross_entropy(s_logits, y) + 10.0 * expected, atol=1e-9)
    grads = torch.autograd.grad(term, list(student.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in teacher.parameters())


def official_donor_rule(n_candidates: int, K: int) -> str:
    """tsd-supplementary ``get_pertubed_timeseries``: ``randperm`` when ``K <= candidates``, else ``randint``."""
    return "without" if K <= n_candidates else "with"


@pytest.mark.parametrize("K, length, n_train", [(50, 24, 60), (10, 24, 60), (12, 40, 12), (5, 40, 40)])
def test_donors_follow_the_official_replacement_rule_against_the_requested_K(K, length, n_train):
    """ItalyPowerDemand-like: T=24, w=10 (14 windows), 30 donors of the other class, K=50 requested: the official
    code draws donors *with* replacement (30 < 50), though only 14 copies are made."""
    train_y = torch.arange(n_train) % 2
    y = train_y[:12]
    donors, starts = sample_perturbations(y, train_y, K, 10, length, generator=torch.Generator().manual_seed(0))
    k = min(K, length - 10)
    assert donors.shape == starts.shape == (12, k)
    assert (train_y[donors] != y[:, None]).all()
    candidates = int((train_y != 0).sum())
    repeats = sum(len(set(row.tolist())) < k for row in donors)
    if official_donor_rule(candidates, K) == "without":
        assert repeats == 0
    else:  # with replacement: some rows repeat a donor (30 candidates, 14 draws: P(no repeat) ~ 2%)
        assert repeats > 0


def test_draws_depend_on_the_sample_and_step_not_on_how_the_batch_is_split():
    train_y = torch.arange(40) % 4
    y, index = train_y[:8], torch.arange(8)
    whole = sample_perturbations(y, train_y, 6, 3, 20, uniform=SampleStreams(index, 3, 11))
    halves = [
        sample_perturbations(y[i : i + 4], train_y, 6, 3, 20, uniform=SampleStreams(index[i : i + 4], 3, 11))
        for i in (0, 4)
    ]
    for part, full in zip(zip(*halves), whole):  # (donors, starts) of the halves, stacked, equal the whole batch's
        assert torch.equal(torch.cat(part), full)
    later = sample_perturbations(y, train_y, 6, 3, 20, uniform=SampleStreams(index, 3, 12))
    assert not torch.equal(later[1], whole[1])  # another step draws other windows


def test_the_normaliser_is_a_global_batch_statistic_with_the_published_gradient():
    s = torch.randn(4, 5, 3, dtype=torch.float64, requires_grad=True)
    ours = torch.autograd.grad(normalize_saliency(s).pow(2).sum(), s)[0]
    reference = torch.autograd.grad((s / (s[s > 0].mean() + 1e-8)).pow(2).sum(), s)[0]
    assert torch.allclose(ours, reference)


def _bank_step(method, teacher, student, train_x, train_y, index, step=1):
    x, y = train_x[index], train_y[index]
    return Step(Batch(x, y, index), student, teacher, student(x), teacher(x).detach(), state=StepState(step, 100, 0))


def test_teacher_bank_is_filled_before_training_from_keyed_draws():
    train_x = torch.randn(10, 2, 16, dtype=torch.float64)
    train_y = torch.arange(10) % 2
    teacher = build_model("lstm", 2, 2, hidden=6, layers=1).double()
    student = build_model("lstm", 2, 2, hidden=4, layers=1).double()
    method = build_method("tsd", perturbations=4, window=3, bank=8).double()
    method.prepare(PrepareContext(teacher, student, train_x, train_y, "fp", batch_size=4, total_steps=100))
    bank = method.bank
    # every sample's entries exist before the first step: what training meets first cannot change them
    assert bank is not None and bank.filled.all() and bank.saliency.shape == (10, 8, 2)
    with torch.no_grad():
        direct = perturbation_saliency(
            teacher.eval(), train_x[[1, 3]], train_x[bank.donors[[1, 3]]], bank.starts[[1, 3]], 3, 8.0
        )
    assert torch.allclose(bank.saliency[[1, 3]], direct, atol=1e-10)
    for i in range(10):
        assert (train_y[bank.donors[i]] != train_y[i]).all()
    before = bank.saliency.clone()
    method.loss(_bank_step(method, teacher, student, train_x, train_y, torch.tensor([3, 1])))
    assert torch.equal(bank.saliency, before)  # a step reads the bank, never refills it
    # a rebuilt bank (what a resumed fit does) is bitwise the same, whatever the batch size or planned steps
    other = build_method("tsd", perturbations=4, window=3, bank=8).double()
    other.prepare(PrepareContext(teacher, student, train_x, train_y, "fp", batch_size=7, total_steps=60))
    assert torch.equal(other.bank.donors, bank.donors) and torch.equal(other.bank.starts, bank.starts)
    assert torch.equal(other.bank.saliency, bank.saliency)


def test_teacher_bank_only_where_it_saves_teacher_forwards():
    train_x, train_y = torch.randn(40, 1, 16), torch.arange(40) % 2
    teacher, student = build_model("lstm", 1, 2, hidden=6, layers=1), build_model("lstm", 1, 2, hidden=4, layers=1)
    method = build_method("tsd", perturbations=5, window=3, bank=20)
    # 10 steps x 8 x 5 = 400 teacher forwards on the fly <= 40 x 20 = 800 for the bank: no bank
    method.prepare(PrepareContext(teacher, student, train_x, train_y, "fp", batch_size=8, total_steps=10))
    assert method.bank is None
    method.prepare(PrepareContext(teacher, student, train_x, train_y, "fp", batch_size=8, total_steps=21))
    assert method.bank is not None  # 840 > 800


def test_copies_are_chunked_only_where_chunking_cannot_change_the_result():
    torch.manual_seed(0)
    bn = build_model("fcn1d", 1, 3, width=0.125).train()
    copies = torch.randn(300, 1, 20)
    calls = []
    handle = bn.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    whole = bn(copies)
    assert torch.allclose(forward_copies(bn, copies, chunk=64), whole, atol=1e-6)  # BatchNorm in train mode: one call
    assert calls == [300, 300]
    bn.eval()
    calls.clear()
    assert torch.allclose(forward_copies(bn, copies, chunk=64), bn(copies), atol=1e-5)
    assert calls[:5] == [64, 64, 64, 64, 44]  # eval mode: chunked, same result
    handle.remove()
    lstm = build_model("lstm", 1, 3, hidden=4, layers=1).train()
    assert torch.allclose(forward_copies(lstm, copies, chunk=7), lstm(copies), atol=1e-6)


def test_variants_stay_available_and_options_are_checked():
    assert isinstance(build_method("tsd", saliency="occlusion", window=5), WindowSaliencyTSD)
    with pytest.raises(LookupError, match="unknown tsd saliency 'nope'"):
        build_method("tsd", saliency="nope")
    with pytest.raises(ValueError, match="weight"):
        build_method("tsd", beta=1.0)  # the variants' old weight is now the term's weight
    with pytest.raises(ValueError, match="unknown tsd option 'distance'"):
        build_method("tsd", distance="cosine")  # distance belongs to the occlusion variant
    with pytest.raises(ValueError, match="tsd option 'perturbations': 'many' is not a valid int"):
        build_method("tsd", perturbations="many")


def test_macro_auc_pr_matches_sklearn():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(size=(60, 4)))
    logits[:, 0] = torch.round(logits[:, 0])  # ties
    labels = torch.tensor(rng.integers(0, 4, 60))
    probs = torch.softmax(logits, 1).numpy()
    for c in range(4):
        assert average_precision(torch.tensor(probs[:, c]), labels == c) == pytest.approx(
            average_precision_score(labels.numpy() == c, probs[:, c]), abs=1e-12
        )
    expected = np.mean([average_precision_score(labels.numpy() == c, probs[:, c]) for c in range(4)])
    assert macro_auc_pr(logits, labels) == pytest.approx(expected, abs=1e-12)


def test_tsd_trains_an_lstm_student_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    x = rng.normal(size=(60, 1, 30)) * 0.3
    x[y == 1, 0, 10:16] += 2.0
    data = ArrayDataset(x, y, ["a", "b"], "bump")
    torch.manual_seed(0)
    teacher = build_model("lstm", 1, 2, hidden=16, layers=2)
    distill(
        None,
        teacher,
        data,
        ["ce"],
        steps=150,
        batch_size=16,
        lr=5e-3,
        work_dir=tmp_path / "t",
        progress=False,
        loggers=(),
    )
    torch.manual_seed(1)
    student = build_model("lstm", 1, 2, hidden=8, layers=1)
    result = distill(
        teacher,
        student,
        data,
        ["ce", {"name": "tsd", "perturbations": 10, "window": 5}],
        steps=60,
        batch_size=16,
        lr=5e-3,
        work_dir=tmp_path / "s",
        progress=False,
        loggers=("csv",),
    )
    assert np.isfinite(result.metrics["train/tsd"]) and result.metrics["train/tsd"] > 0
