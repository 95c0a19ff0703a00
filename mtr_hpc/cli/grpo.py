"""`mtr grpo --config F [key=value ...]`: stage 2, GRPO against simulated tools."""

from __future__ import annotations

import json
import sys

from ._stage import add_stage_args, overrides_of


def register(sub) -> None:
    p = sub.add_parser("grpo", help="GRPO against simulated tools (Megatron-Core trainer + rollout engine)")
    add_stage_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config import load_config
    from ..train.grpo import run_grpo
    from ..train.grpo_config import GRPOConfig

    cfg = load_config(GRPOConfig, args.config, overrides_of(args), section="grpo")
    from ..train.preempt import PREEMPTED_EXIT_CODE

    summary = run_grpo(cfg)
    print(json.dumps(summary, default=str), file=sys.stderr)
    return PREEMPTED_EXIT_CODE if summary.get("preempted") else 0
