"""`mtr synth --config F [key=value ...]` and `mtr synth merge --out DIR`.

`mtr synth` runs one shard of a run (`--shard-index/--num-shards`, by default the Slurm array task:
`SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN` of `SLURM_ARRAY_TASK_COUNT`), or, outside an array job and
without `--shard-index`, every shard in turn. A shard resumes what a killed run left and a finished shard
is not redone. `mtr synth merge` merges the finished shards of a run directory (see
`mtr_hpc.synth.merge`). A config file with a `synth:` section (a multi-stage file) is read from that
section. `--print-llm` prints the model the run's `llm` backends need (empty for grounded runs): what
`slurm/synth.sbatch` asks to decide whether to start `vllm serve`.
"""

from __future__ import annotations

import argparse
import json
import sys

from ._stage import add_stage_args, overrides_of


def register(sub) -> None:
    p = sub.add_parser(
        "synth",
        help="synthesize traces (one shard, or every shard); `mtr synth merge --out DIR` merges shards",
        description="Synthesize ReAct traces with ToolMaker / AutoAgent / ToolActor; "
        "`mtr synth merge --out DIR` merges the finished shards of a run.",
    )
    add_stage_args(p)
    p.add_argument("--shard-index", type=int, default=None, help="shard to run (default: Slurm array task)")
    p.add_argument("--num-shards", type=int, default=None, help="shards of the run (default: array size)")
    p.add_argument("--json", action="store_true", help="print the manifest(s) as one JSON object on stdout")
    p.add_argument("--print-llm", action="store_true", help="print the llm model the config needs and exit")
    p.set_defaults(func=run)


def _shard_args(args: argparse.Namespace) -> list[str]:
    from ..synth.shards import slurm_array_shard

    env_index, env_count = slurm_array_shard()
    index = args.shard_index if args.shard_index is not None else env_index
    count = args.num_shards if args.num_shards is not None else env_count
    out = []
    if count is not None:
        out.append(f"num_shards={count}")
    if index is not None:
        out.append(f"shard_index={index}")
    return out


def run(args: argparse.Namespace) -> int:
    if args.overrides[:1] == ["merge"]:
        return run_merge(args)
    from ..errors import ConfigError
    from ..stages import get_stage

    if not args.config:
        raise ConfigError("--config", "mtr synth needs --config FILE (e.g. configs/synth-demo.yaml)")
    stage = get_stage("synth")
    cfg = stage.load(args.config, overrides_of(args) + _shard_args(args))
    if args.print_llm:
        print(cfg.llm.model or cfg.agents.model if cfg.uses_llm else "")
        return 0
    manifests = stage.run(cfg)
    for m in manifests:
        done = "already complete" if m.get("already_complete") else f"{m['timings']['wall_s']:.1f} s"
        print(
            f"mtr synth: {m['shard']}: {m['kept']} kept, {m['rejected']} rejected {m['rejected_by_reason']} "
            f"({done}) in {cfg.out}",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps({"out": cfg.out, "shards": manifests}))
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..synth.merge import merge_run

    extra = args.overrides[1:]
    if extra:
        raise ConfigError(extra[0], "mtr synth merge takes only --out DIR")
    if not args.out:
        raise ConfigError("--out", "mtr synth merge needs the run directory: --out DIR")
    manifest = merge_run(args.out)
    print(
        f"mtr synth merge: {manifest['kept']} kept, {manifest['rejected']} rejected over "
        f"{manifest['num_shards']} shards -> {args.out}/merged/traces.jsonl",
        file=sys.stderr,
    )
    if args.json:
        print(json.dumps({k: v for k, v in manifest.items() if k not in ("config", "versions")}))
    return 0
