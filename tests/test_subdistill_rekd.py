import pytest
import torch
import torch.nn.functional as F

from xdistill.data import load_dataset
from xdistill.engine import distill
from xdistill.methods import Batch, RationaleKD, Step, SubDistill, estimate_subspace
from xdistill.methods.subdistill import as_vectors, coordinates
from xdistill.metrics import accuracy, predict
from xdistill.models import build_model, build_rationale_model
from xdistill.subtask import ClassSubset, subtask_data
from xdistill.training import train_classifier

FAST = dict(batch_size=32, lr=3e-3, progress=False, loggers=(), checkpoint=False)


# ---- SubDistill ---------------------------------------------------------------------------------


def planted(n=3000, dim=24, rank=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, rank, generator=g))
    z = torch.randn(n, rank, generator=g) * torch.tensor([6.0, 4.0, 3.0])[:rank]
    return z @ basis.T + 0.3 * torch.randn(n, dim, generator=g) + 1.5, basis


def principal_cosines(a, b):
    return torch.linalg.svdvals(a.T.double() @ b.double())


def test_subspace_recovery_of_a_planted_low_rank_component():
    x, basis = planted()
    found = estimate_subspace(x)  # k from explained variance
    assert found.k == 3
    assert principal_cosines(basis, found.basis).min() > 0.999
    assert torch.allclose(found.mean, torch.full((24,), 1.5, dtype=torch.float64), atol=0.1)


def test_relevance_weights_pick_the_relevant_subspace():
    """Two planted components; weighting samples by relevance to one of them recovers that one."""
    g = torch.Generator().manual_seed(1)
    dim = 16
    basis, _ = torch.linalg.qr(torch.randn(dim, 2, generator=g))
    relevant, irrelevant = basis[:, :1], basis[:, 1:]
    a = torch.randn(4000, 1, generator=g)
    b = torch.randn(4000, 1, generator=g) * 1.5  # the larger, irrelevant direction (variance 2.25 vs 1)
    x = a @ relevant.T + b @ irrelevant.T + 0.05 * torch.randn(4000, dim, generator=g)
    plain = estimate_subspace(x, k=1)
    weighted = estimate_subspace(x, weights=a.squeeze(1).abs() ** 4, k=1)  # weighted variance: E[a^6]/E[a^4] = 5
    assert principal_cosines(irrelevant, plain.basis).item() > 0.99
    assert principal_cosines(relevant, weighted.basis).item() > 0.9


def test_shrinkage_keeps_a_rank_deficient_covariance_finite_and_bad_k_is_clear():
    x = torch.randn(5, 40)  # fewer samples than dimensions
    found = estimate_subspace(x, k=3, shrinkage=0.1)
    assert torch.isfinite(found.basis).all() and found.eigenvalues.min() > 0
    assert torch.allclose(found.basis.T @ found.basis, torch.eye(3, dtype=torch.float64), atol=1e-8)
    with pytest.raises(ValueError, match="k must be between 1 and the layer width 40"):
        estimate_subspace(x, k=41)


def test_as_vectors_and_coordinates():
    f = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    v = as_vectors(f)
    assert v.shape == (8, 3) and torch.equal(v[1], f[0, :, 1])
    basis = torch.eye(3)[:, :2]
    assert torch.equal(coordinates(f, torch.zeros(3), basis), f[:, :2])


def test_subtask_data_and_class_subset():
    train, _ = load_dataset("digits")
    sub = subtask_data(train, [8, 3])
    assert sub.class_names == ["8", "3"] and set(sub.y.tolist()) == {0, 1}
    assert len(sub) == int(((train.y == 8) | (train.y == 3)).sum())
    model = build_model("cnn", 1, 10, width=0.25).eval()
    wrapped = ClassSubset(model, [8, 3])
    assert torch.equal(wrapped(sub.x[:4]), model(sub.x[:4])[:, [8, 3]])
    assert wrapped.get_submodule("features.0") is model.features[0]
    with pytest.raises(ValueError, match="not classes of digits"):
        subtask_data(train, [3, 12])


def test_subdistill_trains_on_a_digits_subtask(tmp_path):
    train, test = load_dataset("digits")
    torch.manual_seed(0)
    teacher = build_model("cnn", 1, 10, width=0.5)
    train_classifier(teacher, train, epochs=6, lr=3e-3, batch_size=32)
    classes = [3, 5, 8]
    sub_train, sub_test = subtask_data(train, classes), subtask_data(test, classes)
    torch.manual_seed(0)
    student = build_model("cnn", 1, 3, width=0.125)
    method = SubDistill({"features.4": "features.4"}, basis="pca", variance=0.9)
    result = distill(ClassSubset(teacher, classes), student, sub_train, [method], epochs=6, work_dir=tmp_path,
                     **{**FAST, "loggers": ("csv",)})
    space = method.subspaces["features.4"]
    assert 1 <= space.k < 32 and method.regressors[0].weight.shape[:2] == (space.k, 8)
    import csv

    rows = [r for r in csv.DictReader(open(next(tmp_path.glob("logs/version_*/metrics.csv")))) if r.get("train/subspace")]
    values = [float(r["train/subspace"]) for r in rows]
    assert values[-1] < values[0]
    assert accuracy(predict(result.student, sub_test.x), sub_test.y) > 0.8


# ---- REKD ---------------------------------------------------------------------------------------


def test_rationale_model_masks_parts_and_keeps_gradients():
    torch.manual_seed(0)
    model = build_rationale_model(1, 3, "window", 4, "fcn1d", {"width": 0.1})
    x = torch.randn(5, 1, 18)
    logits = model(x)
    assert logits.shape == (5, 3) and model.last_mask.shape == (5, 5)  # ceil(18 / 4)
    mask = model.last_mask.detach()
    assert torch.allclose(mask, mask.round(), atol=1e-6)  # hard 0/1 forward (up to rounding of the ST trick)
    expanded = model.expand(model.last_mask, x)
    assert expanded.shape == (5, 1, 18) and torch.equal(expanded[:, 0, 4:8], model.last_mask[:, 1:2].expand(5, 4))
    logits.sum().backward()
    assert model.selector.body[0].weight.grad.abs().sum() > 0  # the relaxation passes gradients to the selector


def test_patch_and_token_rationale_models():
    image_model = build_rationale_model(1, 4, "patch", 4, "cnn", {"width": 0.25})
    x = torch.randn(2, 1, 16, 16)
    image_model(x)
    assert image_model.last_mask.shape == (2, 16)
    text_model = build_rationale_model(1, 2, "token", 1, "textcnn", {"width": 0.25}, vocab_size=50)
    tokens = torch.randint(0, 50, (3, 12)).float()
    assert text_model(tokens).shape == (3, 2) and text_model.last_mask.shape == (3, 12)


def test_rekd_loss_terms_by_hand():
    torch.manual_seed(0)
    student = build_rationale_model(1, 2, "window", 4, "fcn1d", {"width": 0.1})
    teacher = build_rationale_model(1, 2, "window", 4, "fcn1d", {"width": 0.2})
    x, y = torch.randn(3, 1, 16), torch.tensor([0, 1, 0])
    s_logits, t_logits = student(x), teacher(x)
    step = Step(Batch(x, y, torch.arange(3)), student, teacher, s_logits, t_logits)
    terms = RationaleKD(ratio=0.25, sparsity=2.0, continuity=0.5).loss(step)
    probs = student.last_probs
    assert terms["sparsity"].item() == pytest.approx(2.0 * (probs.mean(1) - 0.25).abs().mean().item(), rel=1e-6)
    assert terms["continuity"].item() == pytest.approx(0.5 * (probs[:, 1:] - probs[:, :-1]).abs().mean().item(), rel=1e-6)
    expected_bce = F.binary_cross_entropy(probs, teacher.last_mask).item()
    assert terms["mask"].item() == pytest.approx(expected_bce, rel=1e-5)
    assert set(terms) == {"ce", "sparsity", "continuity", "mask", "kd"}


def _gt_iou(model, data):
    model.eval()
    with torch.no_grad():
        model(data.x)
    size = model.selector.part_size
    gt = F.max_pool1d(data.rationale[:, None], size, size, ceil_mode=True)[:, 0] > 0.5
    sel = model.last_mask > 0.5
    return ((sel & gt).sum(1).float() / (sel | gt).sum(1).clamp(min=1).float()).mean().item()


def test_rekd_student_beats_a_rationale_student_without_teacher(tmp_path):
    """Generated series with known rationales; same student, seed and budget, with and without the teacher."""
    train, test = load_dataset("synthetic_series", n_train=600, n_test=300)
    torch.manual_seed(0)
    teacher = build_rationale_model(1, 4, "window", 8, "fcn1d", {"width": 0.25})
    distill(None, teacher, train, [{"name": "rationale", "ratio": 0.2}], epochs=30, work_dir=tmp_path / "t", **FAST)
    assert accuracy(predict(teacher, test.x), test.y) > 0.6

    def student():
        torch.manual_seed(0)
        return build_rationale_model(1, 4, "window", 8, "fcn1d", {"width": 0.125}, selector_width=0.5)

    alone = distill(teacher, student(), train, [{"name": "rationale", "ratio": 0.2}], epochs=20,
                    work_dir=tmp_path / "re", **FAST).student
    rekd = distill(teacher, student(), train, [{"name": "rekd", "ratio": 0.2}], epochs=20,
                   work_dir=tmp_path / "rekd", **FAST).student
    assert _gt_iou(rekd, test) > _gt_iou(alone, test) + 0.1
    assert accuracy(predict(rekd, test.x), test.y) > accuracy(predict(alone, test.x), test.y) + 0.1


def test_text_rationale_model_finds_the_key_phrase(tmp_path):
    train, test = load_dataset("synthetic_text", n_train=600, n_test=200)
    assert train.x.dtype == torch.long and train.rationale.shape == train.x.shape
    torch.manual_seed(0)
    model = build_rationale_model(1, 3, "token", 1, "textcnn", {"width": 0.5}, vocab_size=200)
    distill(None, model, train, [{"name": "rationale", "ratio": 0.15}], epochs=15, work_dir=tmp_path, **FAST)
    assert accuracy(predict(model, test.x), test.y) > 0.9
    model.eval()
    with torch.no_grad():
        model(test.x)
    selected = model.last_mask > 0.5
    gt = test.rationale > 0.5
    precision = (selected & gt).sum().item() / max(1, selected.sum().item())
    assert precision > 3 * gt.float().mean().item()  # the kept tokens are mostly the phrase, far above chance


def test_bert_predictor_from_a_config_masks_token_embeddings():
    pytest.importorskip("transformers")
    config = {"vocab_size": 60, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
              "intermediate_size": 32, "max_position_embeddings": 32}
    torch.manual_seed(0)
    model = build_rationale_model(1, 2, "token", 1, "bert", {"config": config}, vocab_size=60)
    tokens = torch.randint(1, 60, (3, 10))
    logits = model(tokens)
    assert logits.shape == (3, 2)
    logits.sum().backward()
    assert model.selector.embedding.weight.grad.abs().sum() > 0  # gradients reach the selector through the mask
    predictor = model.predictor.eval()
    keep = torch.ones(3, 10)
    keep[:, 4] = 0
    changed = tokens.clone()
    changed[:, 4] = 7
    with torch.no_grad():  # a masked token cannot change the prediction
        assert torch.allclose(predictor(tokens, keep), predictor(changed, keep), atol=1e-5)
    with pytest.raises(ValueError, match="pretrained= .* or config="):
        build_model("bert", 1, 2)
