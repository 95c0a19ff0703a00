"""`mtr sft --config F [key=value ...]`: stage 1, supervised fine-tuning on traces.

Multi-process runs (tensor/data parallel) start one process per rank, e.g.
`torchrun --nproc-per-node 2 -m mtr_hpc sft --config configs/sft-tiny.yaml model.tp=2`.
"""

from __future__ import annotations

from ._stage import add_stage_args, finish, overrides_of


def register(sub) -> None:
    p = sub.add_parser("sft", help="supervised fine-tuning on traces (Megatron-Core)")
    add_stage_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..stages import run_stage

    return finish(run_stage("sft", args.config, overrides_of(args)))
