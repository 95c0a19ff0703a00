"""Shared argument handling of the stage verbs (`sft`, `grpo`, `eval`, `synth`)."""

from __future__ import annotations

import argparse


def add_stage_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", help="YAML config file (a stage section of a multi-stage file works)")
    parser.add_argument("--out", help="run directory (overrides the config's `out`)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")


def overrides_of(args: argparse.Namespace) -> list[str]:
    items = list(args.overrides)
    if args.out:
        items.append(f"out={args.out}")
    return items
