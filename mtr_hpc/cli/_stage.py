"""Shared argument handling of the stage verbs (`sft`, `grpo`, `eval`, `synth`)."""

from __future__ import annotations

import argparse


def add_stage_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", help="YAML config file (a stage section of a multi-stage file works)"
    )
    parser.add_argument("--out", help="run directory (overrides the config's `out`)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")


def overrides_of(args: argparse.Namespace) -> list[str]:
    items = list(args.overrides)
    if args.out:
        items.append(f"out={args.out}")
    return items


def finish(summary: dict) -> int:
    """Print a stage's summary (stderr) and map it to the exit code (42: preempted, requeue me)."""
    import json
    import sys

    from ..train.preempt import PREEMPTED_EXIT_CODE

    print(json.dumps(summary, default=str), file=sys.stderr)
    return PREEMPTED_EXIT_CODE if summary.get("preempted") else 0
