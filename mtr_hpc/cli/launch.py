"""`mtr launch STAGE [key=value ...] --executor slurm|local --config F [--num-shards N] [--merge] ...`.

Config overrides (`key=value`) go right after STAGE: argparse binds positionals in one run.

Submits a registered stage (`mtr_hpc.stages.STAGES`) through submitit and waits for it. For an array
stage (`synth`) `--num-shards` tasks run as one Slurm job array (default: the config's `num_shards`),
and `--merge` merges their outputs afterwards. The JSON summary (job ids, run directory, per-task
results, merged manifest counts) goes to stdout with `--json`.
"""

from __future__ import annotations

import argparse
import json
import sys

from ._stage import add_stage_args, overrides_of


def register(sub) -> None:
    p = sub.add_parser("launch", help="run a stage on Slurm (job array) or locally through submitit")
    p.add_argument("stage", help="registered stage, e.g. synth")
    p.add_argument("--executor", choices=("slurm", "local"), default="slurm")
    add_stage_args(p)
    p.add_argument("--num-shards", type=int, default=None, help="array tasks (default: config num_shards)")
    p.add_argument("--partition", default=None)
    p.add_argument("--time-min", type=int, default=60, help="time limit of each task, minutes")
    p.add_argument(
        "--signal-delay-s", type=int, default=90, help="submitit's SIGUSR2 this long before the time limit"
    )
    p.add_argument("--cpus-per-task", type=int, default=1)
    p.add_argument("--nodes", type=int, default=1, help="nodes of a distributed stage (sft, grpo)")
    p.add_argument("--tasks-per-node", type=int, default=1, help="ranks per node of a distributed stage")
    p.add_argument("--gpus-per-node", type=int, default=0)
    p.add_argument("--mem-gb", type=float, default=None)
    p.add_argument("--folder", default="", help="submitit logs (default: <out>/submitit)")
    p.add_argument("--merge", action="store_true", help="merge the tasks' outputs when all have finished")
    p.add_argument("--no-wait", action="store_true", help="print the job ids and return at once")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.set_defaults(func=run)


def _config_num_shards(config_path: str | None, stage: str) -> int:
    from ..config import read_yaml

    data = read_yaml(config_path) if config_path else {}
    if isinstance(data.get(stage), dict):
        data = data[stage]
    value = data.get("num_shards", 1)
    return value if isinstance(value, int) and value >= 1 else 1


def run(args: argparse.Namespace) -> int:
    from ..launch.submitit_launch import LaunchOptions, launch
    from ..stages import get_stage

    stage = get_stage(args.stage)
    n = args.num_shards or (_config_num_shards(args.config, args.stage) if stage.array else 1)
    opts = LaunchOptions(
        executor=args.executor,
        num_tasks=n,
        folder=args.folder,
        partition=args.partition,
        time_min=args.time_min,
        signal_delay_s=args.signal_delay_s,
        cpus_per_task=args.cpus_per_task,
        nodes=args.nodes,
        tasks_per_node=args.tasks_per_node,
        gpus_per_node=args.gpus_per_node,
        mem_gb=args.mem_gb,
        merge=args.merge,
        wait=not args.no_wait,
    )
    result = launch(args.stage, args.config, overrides_of(args), opts)
    print(f"mtr launch: {args.stage}: jobs {', '.join(result.job_ids)} -> {result.out}", file=sys.stderr)
    if args.json:
        merged = result.merged
        if isinstance(merged, dict):
            merged = {k: v for k, v in merged.items() if k not in ("config", "versions")}
        summary = {"stage": result.stage, "out": result.out, "job_ids": result.job_ids}
        summary.update(results=result.results, merged=merged)
        print(json.dumps(summary, default=str))
    return 0
