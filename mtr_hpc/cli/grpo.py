"""`mtr grpo --config F [key=value ...]`: stage 2, GRPO against simulated tools."""

from __future__ import annotations

from ._stage import add_stage_args, finish, overrides_of


def register(sub) -> None:
    p = sub.add_parser("grpo", help="GRPO against simulated tools (Megatron-Core trainer + rollout engine)")
    add_stage_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..stages import run_stage

    return finish(run_stage("grpo", args.config, overrides_of(args)))
