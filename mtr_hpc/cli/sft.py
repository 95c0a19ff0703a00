"""`mtr sft --config F [key=value ...]`: stage 1, supervised fine-tuning on traces.

Multi-process runs (tensor/data parallel) start one process per rank, e.g.
`torchrun --nproc-per-node 2 -m mtr_hpc sft --config configs/sft-tiny.yaml model.tp=2`.
"""

from __future__ import annotations

import json
import sys

from ._stage import add_stage_args, overrides_of


def register(sub) -> None:
    p = sub.add_parser("sft", help="supervised fine-tuning on traces (Megatron-Core)")
    add_stage_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config import load_config
    from ..train.sft import run_sft
    from ..train.sft_config import SFTConfig

    cfg = load_config(SFTConfig, args.config, overrides_of(args), section="sft")
    from ..train.preempt import PREEMPTED_EXIT_CODE

    summary = run_sft(cfg)
    print(json.dumps(summary, default=str), file=sys.stderr)
    return PREEMPTED_EXIT_CODE if summary.get("preempted") else 0
