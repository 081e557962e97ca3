"""The ``xdistill`` command line's arguments: one parser, a sub-command each, every flag with its help. The
commands' work is in :mod:`xdistill.cli`, which hands its functions in (``handlers``, by command name). Loads no
heavy library: ``xdistill --help`` stays fast."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping

from . import __version__

Handler = Callable[[argparse.Namespace], int]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def recipe_args(parser: argparse.ArgumentParser, optional: bool = False) -> None:
    """The flags of every command that works on a recipe's run directory."""
    if optional:
        parser.add_argument("recipe", nargs="?", help="recipe YAML (default: the bundled GunPoint study)")
    else:
        parser.add_argument("recipe", help="recipe YAML file (see recipes/)")
    parser.add_argument("--out", metavar="DIR", help="run directory (default: runs/<recipe name>)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--restart", action="store_true", help="start over when the run directory holds another recipe")
    parser.add_argument(
        "--devices",
        type=positive_int,
        metavar="N",
        help="training processes per node (overrides the recipe's hardware.devices)",
    )
    parser.add_argument("--num-nodes", type=positive_int, metavar="N", help="nodes (overrides hardware.num_nodes)")
    parser.add_argument("--seed", type=int, metavar="S", help="only this seed of the recipe's seeds list")


def build_parser(handlers: Mapping[str, Handler]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xdistill",
        description="Explainable knowledge distillation: keep the teacher's predictions and its reasons.",
    )
    parser.add_argument("--version", action="version", version=f"xdistill {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an unexpected error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _study_commands(commands, handlers)
    _tool_commands(commands, handlers)
    _audit_command(commands, handlers["audit"])
    listing = commands.add_parser("list", help="list datasets, models, terms, presets, protocols, explainers, parts")
    listing.set_defaults(handler=handlers["list"])
    return parser


def _study_commands(commands: argparse._SubParsersAction, handlers: Mapping[str, Handler]) -> None:
    """run, and its stages one by one: teach, explain, distill, evaluate."""
    run = commands.add_parser("run", help="the whole study of a recipe: data, teacher, students, evaluation, report")
    recipe_args(run, optional=True)
    run.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        metavar="N",
        help="run the recipe's seeds N at a time, one process each (the same numbers as one after another)",
    )
    run.set_defaults(handler=handlers["run"])
    for name, text in (
        ("teach", "train (or load) the recipe's teacher"),
        ("explain", "precompute the teacher attribution stores the recipe's methods read"),
    ):
        sub = commands.add_parser(name, help=text)
        recipe_args(sub)
        sub.set_defaults(handler=handlers[name])
    for name, text in (
        ("distill", "train the recipe's students"),
        ("evaluate", "compare each student with the teacher on held-out data"),
    ):
        sub = commands.add_parser(name, help=text)
        recipe_args(sub)
        sub.add_argument("--student", action="append", metavar="NAME", help="only this student (repeatable)")
        sub.set_defaults(handler=handlers[name])


def _tool_commands(commands: argparse._SubParsersAction, handlers: Mapping[str, Handler]) -> None:
    """report, demo, schema, export."""
    report = commands.add_parser("report", help="write the HTML/Markdown/JSON report of a run")
    report.add_argument("target", metavar="RUN_DIR|RECIPE")
    report.add_argument("--out", metavar="DIR", help="run directory when a recipe is given")
    report.add_argument("--quiet", action="store_true")
    report.set_defaults(handler=handlers["report"])

    demo = commands.add_parser("demo", help="train a teacher and a small student on GunPoint and compare their reasons")
    demo.add_argument(
        "--dataset", default="ucr:GunPoint", help="dataset spec (default: ucr:GunPoint, bundled with aeon)"
    )
    demo.add_argument("--epochs", type=positive_int, default=60, help="training epochs for each model (default 60)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file")
    demo.set_defaults(handler=handlers["demo"])

    schema = commands.add_parser(
        "schema",
        help="the recipe reference: every field, its default and meaning, dataset and model options, accepted names",
    )
    schema.add_argument("--format", choices=["markdown", "json"], default="markdown")
    schema.set_defaults(handler=handlers["schema"])

    export = commands.add_parser(
        "export",
        help="write a trained student of a run directory as a .pt2 (torch.export), safetensors or ONNX file",
    )
    export.add_argument("run_dir", metavar="RUN_DIR")
    export.add_argument("--student", required=True, help="the student's name in the recipe")
    export.add_argument("--format", default="pt2", help="pt2 (default), safetensors or onnx")
    export.add_argument("--seed", type=int, help="the seed of a several-seed study (default: its first)")
    export.add_argument("--out", metavar="FILE", help="default: RUN_DIR[/seed-N]/export/STUDENT.FORMAT")
    export.set_defaults(handler=handlers["export"])


def _audit_command(commands: argparse._SubParsersAction, handler: Handler) -> None:
    audit = commands.add_parser(
        "audit",
        help="compare any teacher and student (weights, import paths or TorchScript) "
        "on a dataset: agreement, alignment, faithfulness, and a report",
    )
    audit.add_argument(
        "--teacher",
        required=True,
        help="a model file (.pt2 from torch.export, e.g. written by xdistill export; or TorchScript .pt), or an "
        "architecture name / package.module:Class with --teacher-weights",
    )
    audit.add_argument("--student", required=True, help="as --teacher")
    audit.add_argument("--data", required=True, help="dataset spec, e.g. ucr:GunPoint or npz:my_data.npz")
    audit.add_argument(
        "--data-options",
        metavar="JSON",
        help='the data loader\'s options (xdistill schema lists them), e.g. \'{"normalize": "none"}\' for models '
        "that take the data as stored; by default series are z-normalised and images standardised, as in a study",
    )
    for role in ("teacher", "student"):
        audit.add_argument(f"--{role}-weights", metavar="FILE", help=f"safetensors weights of an architecture {role}")
        audit.add_argument(
            f"--{role}-options", metavar="JSON", help="the architecture's options, e.g. '{\"width\": 0.5}'"
        )
    audit.add_argument("--explainer", default="integrated_gradients")
    audit.add_argument("--explainer-options", metavar="JSON")
    audit.add_argument("--parts", default="timestep", help="timestep, window, pixel, patch, token, feature")
    audit.add_argument("--part-options", metavar="JSON")
    audit.add_argument("--k", type=positive_int, default=5)
    audit.add_argument("--max-samples", type=positive_int, default=500)
    audit.add_argument("--out", metavar="DIR", help="report directory (default runs/audit)")
    audit.set_defaults(handler=handler)
