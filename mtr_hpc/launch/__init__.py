"""Launching stages on Slurm or locally through submitit (`mtr launch STAGE ...`), and the stage registry.

A stage is registered by name with the dotted path of its entry point, a callable
`fn(config_path: str | None, overrides: list[str]) -> Any` that runs the stage in the calling process
(what one Slurm task executes). An `array` stage runs as a job array, task i of n receiving the extra
overrides `shard_index=i num_shards=n`; its optional `merge` entry, `fn(out_dir) -> Any`, combines the
tasks' outputs once all have finished. Entries are imported only when a task runs, so registering a
stage costs nothing and the registry can name stages whose modules need optional GPU packages.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class Stage:
    name: str
    entry: str  # "package.module:function"
    array: bool = False
    merge: str | None = None
    distributed: bool = False  # one submitit task per rank (TrainTask), torch.distributed set up from Slurm


STAGES: dict[str, Stage] = {}


def register_stage(stage: Stage) -> Stage:
    STAGES[stage.name] = stage
    return stage


def get_stage(name: str) -> Stage:
    if name not in STAGES:
        raise ConfigError("stage", f"unknown stage '{name}'; registered: {', '.join(sorted(STAGES))}")
    return STAGES[name]


def resolve(dotted: str) -> Callable[..., Any]:
    module, _, attr = dotted.partition(":")
    return getattr(importlib.import_module(module), attr)


register_stage(
    Stage("synth", "mtr_hpc.synth.runner:run_from_config", array=True, merge="mtr_hpc.synth.merge:merge_run")
)
register_stage(Stage("sft", "mtr_hpc.launch.train_task:run_sft", distributed=True))
register_stage(Stage("grpo", "mtr_hpc.launch.train_task:run_grpo", distributed=True))

__all__ = ["STAGES", "Stage", "get_stage", "register_stage", "resolve"]
