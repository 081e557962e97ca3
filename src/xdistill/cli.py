"""The ``xdistill`` command line. Heavy libraries load only inside the command that needs them."""

from __future__ import annotations

import argparse
import sys

from . import __version__


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(dataset=args.dataset, epochs=args.epochs, seed=args.seed, json_path=args.json)
    return 0


def _list(args: argparse.Namespace) -> int:
    from .data import DATASETS, aeon_shipped
    from .explain import EXPLAINERS
    from .models import MODELS
    from .parts import PARTS

    print("datasets:   " + ", ".join(DATASETS.names()))
    print("  offline ucr:<name>: " + ", ".join(aeon_shipped()))
    print("models:     " + ", ".join(MODELS.names()))
    print("explainers: " + ", ".join(EXPLAINERS.names()))
    print("parts:      " + ", ".join(PARTS.names()))
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xdistill", description="Explainable knowledge distillation.")
    parser.add_argument("--version", action="version", version=f"xdistill {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="train a teacher and a small student on GunPoint and compare their reasons")
    demo.add_argument("--dataset", default="ucr:GunPoint", help="dataset spec (default: ucr:GunPoint, bundled with aeon)")
    demo.add_argument("--epochs", type=_positive_int, default=60, help="training epochs for each model (default 60)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file")
    demo.set_defaults(handler=_demo)

    listing = commands.add_parser("list", help="list datasets, models, explainers and part kinds")
    listing.set_defaults(handler=_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, LookupError, FileNotFoundError) as error:
        print(f"xdistill: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xdistill: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
