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
    """Print a stage's summary (stderr) and map it to the exit code.

    A preempted run (checkpoint saved) exits 42, "requeue me"; under `slurm/stage.sh`, which sets
    `MTR_REQUEUE_MARKER`, it touches that file and exits 0 instead (see stage.sh for why).
    """
    import json
    import os
    import sys
    from pathlib import Path

    from ..train.preempt import PREEMPTED_EXIT_CODE

    print(json.dumps(summary, default=str), file=sys.stderr)
    if not summary.get("preempted"):
        return 0
    marker = os.environ.get("MTR_REQUEUE_MARKER")
    if marker:
        Path(marker).touch()
        return 0
    return PREEMPTED_EXIT_CODE
