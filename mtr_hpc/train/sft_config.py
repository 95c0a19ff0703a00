"""Configs of the SFT stage: one dataclass per component, nested in `SFTConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config import check_min
from ..errors import ConfigError
from ..models.config import ModelConfig
from ..tracking import WandbConfig
from .seams.base import OptimConfig


@dataclass
class SFTDataConfig:
    traces: list[str] = field(default_factory=list)  # JSONL files, globs, or run dirs (DIR/traces/*.jsonl)
    seq_len: int = 2048
    overflow: Literal["truncate", "drop"] = "truncate"
    heldout_fraction: float = 0.05
    skip_bad: bool = True  # malformed trace lines are counted and skipped, not fatal
    system_prompt: str | None = None
    # How prompts list the tools (`trace.chat_format`): `json` (Qwen2.5's Hermes block) or `compact`.
    # Recorded in the exported model, so GRPO and evaluation prompt it the same way.
    tools_format: Literal["json", "compact"] = "json"

    def __post_init__(self) -> None:
        check_min("data.", self, seq_len=2)
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ConfigError("data.heldout_fraction", f"must be in [0, 1), got {self.heldout_fraction}")


@dataclass
class SFTTrainConfig:
    steps: int = 100
    global_batch_rows: int = 8  # packed rows per optimizer step, over all data-parallel ranks
    micro_batch_rows: int = 1
    eval_every: int = 50
    eval_rows: int = 8
    save_every: int = 50
    keep_last: int = 2
    seed: int = 1234
    dist_timeout_min: float = 30.0  # how long a collective may wait before the job fails
    # Under Slurm, stop and save when the next step, a save and this margin would run past the job's time
    # limit (0: only signals stop the run). Cover what the measured times miss: the exit and a requeue.
    time_limit_margin_s: float = 60.0

    def __post_init__(self) -> None:
        check_min("train.", self, steps=1, global_batch_rows=1, micro_batch_rows=1, eval_every=1)
        check_min(
            "train.",
            self,
            eval_rows=0,
            save_every=1,
            keep_last=0,
            dist_timeout_min=1e-3,
            time_limit_margin_s=0.0,
        )
        if self.global_batch_rows % self.micro_batch_rows:
            raise ConfigError(
                "train.micro_batch_rows",
                f"{self.micro_batch_rows} does not divide train.global_batch_rows={self.global_batch_rows}",
            )


@dataclass
class SFTConfig:
    out: str = "runs/sft"
    device: Literal["auto", "cpu", "gpu"] = "auto"
    init: Literal["pretrained", "random"] = "pretrained"
    tokenizer: str | None = None  # defaults to model.hf
    resume: bool = True
    export_hf: bool = True  # write OUT/hf (safetensors, config, tokenizer) at the end
    model: ModelConfig = field(default_factory=ModelConfig)
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: SFTTrainConfig = field(default_factory=SFTTrainConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)

    def __post_init__(self) -> None:
        if self.model.layer_spec == "te" and self.train.micro_batch_rows != 1:
            raise ConfigError(
                "train.micro_batch_rows", "the te spec packs one row per microbatch (THD layout)"
            )
