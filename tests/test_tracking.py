"""metrics.jsonl + W&B offline logging; run directory config checks."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mtr_hpc.rundir import RunDirError, prepare_run_dir, write_manifest
from mtr_hpc.tracking import MetricsLogger, WandbConfig, read_metrics, resolve_wandb_mode


def test_metrics_jsonl_and_resume_truncation(tmp_path):
    with MetricsLogger(tmp_path, "sft", WandbConfig(mode="disabled")) as log:
        for step in range(4):
            log.log(step, {"sft/loss": 1.0 / (step + 1)})
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 4, "sft/lo')  # a line cut by a kill
    with MetricsLogger(tmp_path, "sft", WandbConfig(mode="disabled"), resume_step=1) as log:
        log.log(2, {"sft/loss": 7.0})
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert rows[-1]["sft/loss"] == 7.0


def test_wandb_offline_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto") == "online"
    assert resolve_wandb_mode("disabled") == "disabled"


def test_wandb_offline_run_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    with MetricsLogger(tmp_path, "grpo", WandbConfig(group="g1")) as log:
        log.log(0, {"grpo/reward/total": 0.5})
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert runs and runs[0].stat().st_size > 0


@dataclass
class _Cfg:
    lr: float = 1.0
    steps: int = 2


def test_run_dir_refuses_a_different_config(tmp_path):
    run = prepare_run_dir(tmp_path / "r", _Cfg())
    assert (run / "config.yaml").exists()
    prepare_run_dir(tmp_path / "r", _Cfg())  # same config: a resume
    with pytest.raises(RunDirError, match="lr"):
        prepare_run_dir(tmp_path / "r", _Cfg(lr=2.0))
    prepare_run_dir(tmp_path / "r", _Cfg(steps=5), ignore_keys=("steps",))
    manifest = write_manifest(run, "sft", counts={"n": 1})
    assert '"torch"' in manifest.read_text()
