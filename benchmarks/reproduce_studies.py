"""The studies ``benchmarks/reproduce.py`` runs: each paper's setting as a recipe dict, by name (``--only``)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from xdistill.recipe import default_recipe_path

RECIPES = default_recipe_path().parent


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((RECIPES / name).read_text())


TSD_SETS = {"ItalyPowerDemand": {}, "GunPoint": {"length": 100}, "Trace": {"length": 100}}
#: GunPoint and Trace run the FCN pair of the same official code (FCNBaseline 128-256-128 teacher,
#: FCNBaselineSmall 8-16-8 students, the library's series defaults). Under the official protocol
#: (tsd_paper) the LSTM 3x100 teacher learns GunPoint on 4 of 10 seeds and stops at training accuracy
#: 0.57-0.78 on Trace (benchmarks/tsd_teacher_seeds.py, RESULTS.md): the LSTM pair there needs a teacher
#: chosen among seeds on the validation split.
FCN_SETS = {"GunPoint", "Trace"}


def with_fcn_pair(data: dict[str, Any]) -> dict[str, Any]:
    data["teacher"] = {"model": "fcn1d", "options": {"width": 1.0}}
    data.pop("training", None)
    for student in data["students"]:
        student["model"], student["options"] = "fcn1d", {"width": 0.0625}
    return data


#: beyond the papers (hard subtask only): the KD-IG overlay alone, and added to SubDistill's objective
IMAGE_COMBINATIONS = [
    {"name": "kd_ig", "model": "cnn", "options": {"width": 0.25}, "methods": [{"name": "kd_ig", "p": 0.1}]},
    {
        "name": "subdistill_ig",
        "model": "cnn",
        "options": {"width": 0.25},
        "methods": [
            {"name": "subdistill_published", "layers": {"features.4": "features.4"}},
            {"name": "ig_overlay", "p": 0.1},
        ],
    },
]


def tsd_studies(sets: list[str], lams: list[float] | None, pair: str = "auto"):
    """``pair``: "auto" = the FCN pair on GunPoint/Trace and the LSTM pair elsewhere; "fcn" or "lstm" = that pair
    on every set (the study's name then says which)."""
    base = load("tsd_paper.yaml")
    if lams:
        base["students"][-1]["sweep"]["values"] = lams
    for dataset in sets:
        options = TSD_SETS[dataset]
        data = copy.deepcopy(base)
        data["name"] = f"tsd-paper-{dataset}" + ("" if pair == "auto" else f"-{pair}")
        data["dataset"] = {"name": f"ucr:{dataset}", "options": options}
        models = (
            "LSTM 3x100 teacher, LSTM 1x16 students, the tsd_paper protocol (Adam 0.005, weight decay 1e-5, "
            "MultiStepLR([25, 30, 35], 0.5) per batch, batch 32, early stopping (patience 50) on a 20% "
            "validation split)"
        )
        if pair == "fcn" or (pair == "auto" and dataset in FCN_SETS):
            data = with_fcn_pair(data)
            models = (
                "FCN 128-256-128 teacher, FCN 8-16-8 students (the official code's FCN pair), series defaults: "
                "2,000 / 3,000 Adam steps, batch 16"
            )
        yield (
            f"TSD as published on {dataset}",
            data["name"],
            data,
            f"tsd_paper recipe: {models}; K=50, w=10, tau=8; alignment = occlusion over 10-step windows.",
            "no_kd",
            None,
            None,
        )


#: beyond the papers: explanation terms combined, on the FCN pair with the TSD study's teacher (same seed)
SERIES_KD = {"name": "hinton", "temperature": 8.0, "alpha": 0.5}
SERIES_TSD = {"name": "tsd", "weight": 1.0, "perturbations": 50, "window": 10, "tau": 8.0, "bank": 100}
SERIES_FITNETS = {"name": "fitnets", "layers": {"features.1": "features.1"}}
SERIES_COMBINATIONS = {
    "kd": [SERIES_KD],
    "fitnets": ["ce", SERIES_FITNETS],
    "tsd": ["ce", SERIES_TSD],
    "kd_tsd": [SERIES_KD, SERIES_TSD],
    "tsd_fitnets": ["ce", SERIES_TSD, SERIES_FITNETS],
}
#: each combined student and the students it combines (compared pairwise over seeds)
COMBINED = {"kd_tsd": ("kd", "tsd"), "tsd_fitnets": ("tsd", "fitnets"), "subdistill_ig": ("subdistill", "kd_ig")}


def combination_studies(sets: list[str]):
    for dataset in sets:
        data = with_fcn_pair(copy.deepcopy(load("tsd_paper.yaml")))
        data["name"] = f"combinations-{dataset}"
        data["dataset"] = {"name": f"ucr:{dataset}", "options": TSD_SETS[dataset]}
        data["students"] = [
            {"name": name, "model": "fcn1d", "options": {"width": 0.0625}, "methods": methods}
            for name, methods in SERIES_COMBINATIONS.items()
        ]
        yield (
            f"Explanation terms combined on {dataset} (FCN pair)",
            data["name"],
            data,
            "FCN 128-256-128 teacher (the TSD study's, same seed), FCN 8-16-8 students, series defaults (3,000 Adam "
            "steps, batch 16); kd = Hinton tau=8, alpha=0.5; tsd = CE + 1.0 TSD (K=50, w=10, tau=8); fitnets = CE + "
            "FitNets hint at features.1 (the middle conv block); kd_tsd and tsd_fitnets add the terms' losses.",
            "tsd",
            None,
            f"tsd-paper-{dataset}",
        )


def image_combination_study():
    """SubDistill's objective plus the KD-IG overlay against each part alone, on SubDistill's hard subtask (its
    protocol and its study's teacher per seed); KD the baseline."""
    data = load("subdistill_fashion_mnist.yaml")
    data["dataset"]["subtask"] = [0, 2, 6]
    data["name"] = "combinations-fashion-mnist"
    data["students"] = [s for s in data["students"] if s["name"] in ("kd", "subdistill")] + IMAGE_COMBINATIONS
    return (
        "Explanation terms combined on Fashion-MNIST classes [0, 2, 6] (SubDistill's hard subtask)",
        data["name"],
        data,
        "subdistill_fashion_mnist recipe and protocol; kd_ig = the KD-IG objective (IG overlay p=0.1, 50 IG "
        "steps); subdistill_ig = SubDistill's objective + the same overlay.",
        "kd",
        None,
        "subdistill-0-2-6",
    )


def ig_full_data(data: dict[str, Any]) -> dict[str, Any]:
    """The IG-overlay recipe on all 60k training and 10k test images, Table 1's four students only."""
    data["dataset"].pop("max_train", None)
    data["dataset"].pop("max_test", None)
    for student in data["students"]:
        if "sweep" in student:
            student.pop("sweep")
            student["name"] = "kd_ig"
            student["methods"] = [{**student["methods"][0], "p": 0.1}]
    return data


def kdig_paper_data(teacher: str, epochs: int, store_dir: str) -> dict[str, Any]:
    """KD-IG under the ``kdig_paper`` protocol on all 60k training images and the 10k test images: the
    overlay probability p in {0 (KD), 0.1, 0.25, 0.5}; one IG store (50 steps) shared by every seed."""
    data = load("ig_overlay_fashion_mnist.yaml")
    data["name"] = "kdig-paper-fashion-mnist-60k"
    data["dataset"].pop("max_train", None)
    data["dataset"].pop("max_test", None)
    data["teacher"]["weights"] = teacher
    data["training"] = {"protocol": "kdig_paper", "epochs": epochs}
    data["students"] = [
        {
            "name": "kd_ig",
            "model": "cnn",
            "options": {"width": 0.25, "depth": 2},
            "methods": [{"name": "kd_ig", "store_dir": store_dir}],
            "sweep": {"option": "p", "values": [0.0, 0.1, 0.25, 0.5]},
        }
    ]
    return data


class StudyOptions(NamedTuple):
    """The command line's choices that shape the studies (``reproduce.py --tsd-sets`` ...)."""

    tsd_sets: list[str]
    tsd_lams: list[float] | None
    ig_teacher: str | None = None
    ig_full: bool = False
    kdig_epochs: int = 100
    root: str = "runs/reproduce"
    tsd_pair: str = "auto"


Study = tuple  # (title, name, recipe dict, note, baseline student, classes, study whose teacher is reused)


def _tsd(o: StudyOptions) -> Iterator[Study]:
    """The ``tsd`` studies."""
    yield from tsd_studies(o.tsd_sets, o.tsd_lams, o.tsd_pair)


def _combinations(o: StudyOptions) -> Iterator[Study]:
    """The ``combinations`` studies."""
    yield from combination_studies([d for d in o.tsd_sets if d in FCN_SETS])


def _subdistill(o: StudyOptions) -> Iterator[Study]:
    """The ``subdistill`` studies."""
    first = None
    for classes in ([0, 2, 6], [5, 7, 9]):
        data = load("subdistill_fashion_mnist.yaml")
        data["dataset"]["subtask"] = classes
        data["name"] = f"subdistill-{'-'.join(map(str, classes))}"
        yield (
            f"SubDistill vs KD / FitNets / AT on Fashion-MNIST classes {classes}",
            data["name"],
            data,
            "subdistill_fashion_mnist recipe: teacher CNN w=1 on all 10 classes; students CNN w=0.25 on the "
            "subtask; alignment = IG on a 7x7 patch grid; deletion AUC flips the teacher's top patches.",
            "kd",
            None,
            first,
        )
        first = first or data["name"]  # the teacher knows all 10 classes: one per seed serves both subtasks


def _image_combinations(o: StudyOptions) -> Iterator[Study]:
    """The ``image_combinations`` studies. After subdistill's study, whose teacher it reuses"""
    yield image_combination_study()


def _rekd(o: StudyOptions) -> Iterator[Study]:
    """The ``rekd`` studies."""
    for kind, recipe, note, classes in (
        (
            "series",
            "rekd_series.yaml",
            "Select-predict models with 8-step window masks; teacher predictor FCN w=0.25, students w=0.125.",
            4,
        ),
        ("text", "rekd_text.yaml", "Token masks over a key phrase at a random place; TextCNN predictors.", 3),
    ):
        data = load(recipe)
        yield (
            f"REKD vs rationale extraction alone on generated {kind}",
            f"rekd-{kind}",
            data,
            note,
            "rationale_alone",
            classes,
            None,
        )
        paper = copy.deepcopy(data)
        paper["training"] = {"protocol": "rekd_paper"}
        yield (
            f"REKD vs rationale extraction alone on generated {kind}, students under the rekd_paper protocol",
            f"rekd-{kind}-paper",
            paper,
            note + " Students: the rekd_paper protocol (AdamW, weight decay 1e-3, batch 32, 35 epochs, the best "
            "epoch by validation loss on a 20% split, Gumbel temperature 5 -> 0.1 updated every 100 steps); the "
            "same teacher (seed by seed) as the study above; the target ratio stays the data's.",
            "rationale_alone",
            classes,
            f"rekd-{kind}",
        )


def _ig_overlay(o: StudyOptions) -> Iterator[Study]:
    """The ``ig_overlay`` studies."""
    data, name = load("ig_overlay_fashion_mnist.yaml"), "ig-overlay-fashion-mnist"
    teacher, teacher_from = "the SubDistill study's teacher, same 12k images and seed", "subdistill-0-2-6"
    if o.ig_teacher:
        data["teacher"]["weights"] = o.ig_teacher
        name, teacher, teacher_from = name + "-full-teacher", f"trained on all 60k images: {o.ig_teacher}", None
    title, images = "IG-overlay KD on Fashion-MNIST (Table 1 shape, p sweep)", "12k images"
    if o.ig_full:
        if not o.ig_teacher:
            raise SystemExit("--ig-full needs --ig-teacher (a teacher trained on all 60k images)")
        data, name = ig_full_data(data), "ig-overlay-fashion-mnist-60k"
        title, images = "IG-overlay KD on all of Fashion-MNIST (Table 1 shape)", "all 60k images, 10k test images"
    yield (
        title,
        name,
        data,
        f"ig_overlay_fashion_mnist recipe: teacher CNN w=1 ({teacher}), students CNN w=0.25 on {images}, "
        "15 epochs AdamW; KD = the paper's T=2.5, a=0.01 (p = 0); IG store 16 steps; "
        "alignment = IG on a 7x7 patch grid.",
        "baseline",
        10,
        teacher_from,
    )


def _kdig(o: StudyOptions) -> Iterator[Study]:
    """The ``kdig`` studies."""
    if not o.ig_teacher:
        raise SystemExit("--only kdig needs --ig-teacher (a teacher trained on all 60k images)")
    data = kdig_paper_data(o.ig_teacher, o.kdig_epochs, str(Path(o.root) / "kdig-ig-store"))
    yield (
        "KD-IG under the kdig_paper protocol on all of Fashion-MNIST",
        data["name"],
        data,
        f"teacher CNN w=1 trained on all 60k images ({o.ig_teacher}); students CNN w=0.25 on all 60k images; "
        f"kdig_paper: Adam 1e-3, batch 64, random crop (padding 4, black in the raw image) + horizontal flip, no "
        f"validation split, the last epoch; KD-IG = 0.99 CE + 0.01 T^2 KL (T=2.5) against the teacher on the "
        f"clean image, IG overlay (50 Gauss-Legendre steps, label target) with probability p; p=0 is plain KD. "
        f"**Budget cut: {o.kdig_epochs} epochs instead of the paper's 100, the same for every student.** Accuracy "
        f"on all 10k test images; explanations on the first 500.",
        "kd_ig[p=0.0]",
        10,
        None,
    )


def _where(o: StudyOptions) -> Iterator[Study]:
    """The ``where`` studies."""
    yield (
        "KD changes where models look (alpha grid, three student sizes) on MNIST-1D",
        "where-models-look",
        load("where_models_look.yaml"),
        "where_models_look recipe: ResNet1D w=0.5 teacher, FCN students w=1/16, 1/8, 1/4; 3,000 Adam steps; "
        "kd alpha = 1 - the poster's alpha; alignment = IG per timestep, k=5.",
        None,
        10,
        None,
    )


def _rekd_images(o: StudyOptions) -> Iterator[Study]:
    """The ``rekd_images`` studies."""
    yield (
        "REKD vs rationale extraction alone on Fashion-MNIST patches",
        "rekd-fashion-mnist",
        load("rekd_fashion_mnist.yaml"),
        "rekd_fashion_mnist recipe: 7x7 grid of 4x4 patches, ratio 0.15, alpha_re 0.5; teacher predictor CNN "
        "w=0.5, students w=0.125 under the rekd_paper protocol; no ground-truth rationale, so precision/recall "
        "are blank.",
        "rationale_alone",
        10,
        None,
    )


def _shortcut(o: StudyOptions) -> Iterator[Study]:
    """The ``shortcut`` studies."""
    yield (
        "The shortcut benchmark on generated series: does a student follow the evidence or the cue?",
        "shortcut-series",
        load("shortcut_series.yaml"),
        "shortcut_series recipe: a class motif at a random place, a cue (a sign pattern at a fixed time) naming "
        "the label in 95% of the students' series and at random in the teacher's; FCN teacher w=0.5, students "
        "w=0.125; flipped = the cue names a wrong class in every test series.",
        "kd",
        4,
        None,
    )


def _shortcut_images(o: StudyOptions) -> Iterator[Study]:
    """The ``shortcut_images`` studies."""
    yield (
        "The shortcut benchmark on generated images: does a student follow the glyph or the corner patch?",
        "shortcut-images",
        load("shortcut_images.yaml"),
        "shortcut_images recipe: a class glyph at a random place in 16x16 noise, a 2x2 sign patch in the top-left "
        "corner naming the label in 95% of the students' images and at random in the teacher's; CNN teacher w=0.5 "
        "(1,500 steps), students w=0.125 (800 steps); flipped = the patch names a wrong class in every test image.",
        "kd",
        4,
        None,
    )


def _shortcut_coloured(o: StudyOptions) -> Iterator[Study]:
    """The ``shortcut_coloured`` studies: the anchor's shape (Coloured MNIST) on Fashion-MNIST."""
    yield (
        "The shortcut benchmark in the anchor's shape: coloured Fashion-MNIST, colour = class for the students",
        "shortcut-coloured-fashion-mnist",
        load("shortcut_coloured_fashion_mnist.yaml"),
        "shortcut_coloured_fashion_mnist recipe: garments tinted by class in every transfer image (cue_agreement "
        "1.0), at random for the teacher (0.1); CNN teacher w=0.5, students w=0.25, 10 epochs on 12,000 images; "
        "flipped = each test garment tinted with another class's colour.",
        "kd",
        10,
        None,
    )


#: each study family's builder, in the order they run (image_combinations after subdistill, whose teacher it reuses)
BUILDERS: dict[str, Callable[[StudyOptions], Iterator[Study]]] = {
    "tsd": _tsd,
    "combinations": _combinations,
    "subdistill": _subdistill,
    "image_combinations": _image_combinations,
    "rekd": _rekd,
    "ig_overlay": _ig_overlay,
    "kdig": _kdig,
    "where": _where,
    "rekd_images": _rekd_images,
    "shortcut": _shortcut,
    "shortcut_images": _shortcut_images,
    "shortcut_coloured": _shortcut_coloured,
}


def studies(only: set[str], *args: Any, **kwargs: Any) -> Iterator[Study]:
    """(title, name, recipe dict, note, baseline student, classes, study whose teacher is reused) per study of
    ``only``, in ``BUILDERS`` order; the other arguments are :class:`StudyOptions`'."""
    options = StudyOptions(*args, **kwargs)
    for name, build in BUILDERS.items():
        if name in only:
            yield from build(options)


STUDIES = [
    "tsd",
    "combinations",
    "subdistill",
    "image_combinations",
    "rekd",
    "rekd_images",
    "ig_overlay",
    "kdig",
    "where",
    "shortcut",
    "shortcut_images",
    "shortcut_coloured",
]
