"""The `mtr` console script.

Each verb lives in its own module under `mtr_hpc.cli` exposing `register(subparsers)`, which adds a
parser whose `func(args) -> int` runs the verb. Command modules import heavy libraries inside `func`, so
`mtr --help` stays fast and works without the optional GPU packages.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import MtrError, RunFailure

# Exit statuses (design §7): 1 is a verb's own "the input has invalid records" (`validate`).
EXIT_USER_ERROR = 2
EXIT_RUN_FAILURE = 3
EXIT_INTERRUPTED = 130

# Verb modules, in the order `mtr --help` lists them. A module that is not present yet is skipped.
COMMAND_MODULES = (
    "synth",
    "validate",
    "tools",
    "score",
    "sft",
    "grpo",
    "eval",
    "convert",
    "serve",
    "index",
    "serve_retriever",
    "demo",
    "launch",
)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="mtr", description="Model-as-Tools Reasoning: synthesize traces, SFT, GRPO, evaluate."
    )
    parser.add_argument("--version", action="version", version=f"mtr-hpc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    import warnings

    # Megatron announces each fallback it takes without Transformer Engine or apex; on CPU that is the
    # expected path, not news.
    warnings.filterwarnings(
        "ignore", message=r".*(Transformer Engine|Apex) (and Apex )?(is|are) not installed"
    )
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USER_ERROR
    try:
        return int(args.func(args) or 0)
    except RunFailure as exc:
        print(f"mtr {args.command}: run failed: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILURE
    except MtrError as exc:
        print(f"mtr {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"mtr {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
