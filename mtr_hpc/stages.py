"""The stage registry: each stage's config class and run function, in one place.

The CLI verbs (`mtr synth | sft | grpo | eval`), `mtr demo` and `mtr launch` (submitit) all look a
stage up here and do the same two things with it:
- `stage.load(config, overrides, values)` builds the stage's typed config, validated as it loads;
- `stage.run(cfg)` runs the stage in this process and returns its summary.

Entries are dotted paths, imported only when used. So the registry costs nothing to import, and it can
name stages whose modules need optional GPU packages.

Launch attributes:
- An `array` stage runs as a Slurm job array: task i of n receives the overrides
  `shard_index=i num_shards=n`. Its `merge` entry, `fn(out_dir)`, combines the tasks' outputs once all
  of them have finished.
- A `distributed` stage runs one task per rank, with torch.distributed set up from Slurm
  (`launch.train_task.TrainTask`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import load_config
from .errors import ConfigError


def resolve(dotted: str) -> Callable[..., Any]:
    """The object that `"package.module:attribute"` names."""
    module, _, attr = dotted.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Stage:
    name: str
    config: str  # "package.module:ConfigClass"
    entry: str  # "package.module:function", fn(cfg) -> summary
    array: bool = False
    merge: str | None = None
    distributed: bool = False

    def load(
        self,
        path: str | Path | None,
        overrides: Sequence[str] = (),
        values: dict[str, Any] | None = None,
    ) -> Any:
        """The stage's config from `path` (its `self.name` section in a multi-stage file), typed
        `values` by dotted key, then `key=value` overrides."""
        return load_config(resolve(self.config), path, overrides, section=self.name, values=values)

    def run(self, cfg: Any) -> Any:
        return resolve(self.entry)(cfg)


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage(
            "synth",
            "mtr_hpc.synth.run_config:SynthRunConfig",
            "mtr_hpc.synth.runner:run_config",
            array=True,
            merge="mtr_hpc.synth.merge:merge_run",
        ),
        Stage("sft", "mtr_hpc.train.sft_config:SFTConfig", "mtr_hpc.train.sft:run_sft", distributed=True),
        Stage(
            "grpo", "mtr_hpc.train.grpo_config:GRPOConfig", "mtr_hpc.train.grpo:run_grpo", distributed=True
        ),
        Stage("eval", "mtr_hpc.eval.config:EvalConfig", "mtr_hpc.eval.harness:run_eval"),
    )
}


def get_stage(name: str) -> Stage:
    if name not in STAGES:
        raise ConfigError("stage", f"unknown stage '{name}'; stages: {', '.join(STAGES)}")
    return STAGES[name]


def run_stage(name: str, config_path: str | None, overrides: Sequence[str]) -> Any:
    """Load and run one stage in this process: what a CLI verb and each submitted task do."""
    stage = get_stage(name)
    return stage.run(stage.load(config_path, list(overrides)))
