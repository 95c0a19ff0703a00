"""Metrics of a run: one JSON object per step in `metrics.jsonl`, mirrored to Weights & Biases.

Keys are namespaced (`synth/…`, `sft/…`, `grpo/…`, `eval/…`, `timing_s/…`) and logged once per step.
W&B runs offline unless an API key is configured (`WANDB_API_KEY` or `wandb login`), so machines
without network still log and can `wandb sync` later; `wandb.mode: disabled` turns it off.

On resume, lines for steps after the checkpoint are dropped from `metrics.jsonl` first, so the file
holds each step exactly once whatever was killed where.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .io import atomic_write_text


@dataclass
class WandbConfig:
    project: str = "mtr-hpc"
    group: str | None = None  # one group per pipeline run; `mtr demo` sets it for every stage
    name: str | None = None
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    tags: list[str] | None = None


def resolve_wandb_mode(mode: str) -> str:
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path(os.path.expanduser("~")) / ".netrc"
    if netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore"):
        return "online"
    return "offline"


class MetricsLogger:
    """Writes `metrics.jsonl` in the run dir and logs the same dicts to W&B."""

    def __init__(
        self,
        run_dir: str | Path,
        stage: str,
        wandb_cfg: WandbConfig | None = None,
        config: dict[str, Any] | None = None,
        resume_step: int | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        self.stage = stage
        self._truncate_after(resume_step)
        self._fh = open(self.path, "a", encoding="utf-8")
        self._wandb = None
        cfg = wandb_cfg or WandbConfig()
        mode = resolve_wandb_mode(cfg.mode)
        if mode != "disabled":
            self._wandb = _start_wandb(self.run_dir, stage, cfg, mode, config)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        record = {"step": step, **{k: _plain(v) for k, v in metrics.items()}}
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in record.items() if k != "step"}, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self._wandb is not None:
            for k, v in values.items():
                self._wandb.summary[k] = _plain(v)

    def close(self) -> None:
        self._fh.close()
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _truncate_after(self, step: int | None) -> None:
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if step is None or rec.get("step", -1) <= step:
                keep.append(line)
        atomic_write_text(self.path, "".join(line + "\n" for line in keep))


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _start_wandb(run_dir: Path, stage: str, cfg: WandbConfig, mode: str, config: dict[str, Any] | None):
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    # A stable id per (run dir, stage) makes a resumed process continue the same W&B run.
    id_file = run_dir / f".wandb_id_{stage}"
    if id_file.exists():
        run_id = id_file.read_text().strip()
    else:
        run_id = uuid.uuid4().hex[:12]
        atomic_write_text(id_file, run_id)
    return wandb.init(
        project=cfg.project,
        group=cfg.group,
        name=cfg.name or f"{run_dir.name}-{stage}",
        job_type=stage,
        tags=cfg.tags,
        dir=str(run_dir),
        mode=mode,
        id=run_id,
        resume="allow",
        config=config or {},
        settings=wandb.Settings(console="off", x_disable_stats=True),
    )


def _plain(v: Any) -> Any:
    if hasattr(v, "item") and callable(v.item):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v
