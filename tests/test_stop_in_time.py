"""A training run stops in time: the job's time left, the signals of Slurm and submitit, and a stop inside
a GRPO step, each leaving a checkpoint that a resume continues from exactly."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from _paths import REPO
from _traces import hotpot_traces

from mtr_hpc.config import load_config
from mtr_hpc.trace.io import write_traces
from mtr_hpc.tracking import read_metrics
from mtr_hpc.train import preempt


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0:59", 59.0), ("12:00", 720.0), ("1:02:03", 3723.0), ("2-01:00:00", 176400.0), ("UNLIMITED", None),
     ("NOT_SET", None), ("", None)],
)  # fmt: skip
def test_squeue_time_left_is_parsed(text, seconds):
    assert preempt.parse_time_left(text) == seconds


def test_the_time_left_comes_from_the_job_end_time_or_from_squeue(tmp_path, monkeypatch):
    assert preempt.slurm_seconds_left({}) is None  # not a Slurm job
    env = {"SLURM_JOB_ID": "7", "SLURM_JOB_END_TIME": str(int(time.time()) + 100)}
    assert 98 <= preempt.slurm_seconds_left(env) <= 100
    fake = tmp_path / "squeue"
    fake.write_text('#!/bin/sh\n[ "$3" = 7 ] && [ "$5" = %L ] && echo " 1:05"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert preempt.slurm_seconds_left({"SLURM_JOB_ID": "7"}) == 65.0


def test_the_deadline_counts_the_next_step_the_save_and_the_margin():
    deadline = preempt.JobDeadline(seconds_left=100.0, margin_s=30.0)
    deadline.step_s, deadline.save_s = 20.0, 10.0
    assert not deadline.near(ahead_s=deadline.step_s)  # 20 + 10 + 30 < 100
    deadline.step_s = 70.0
    assert deadline.near(ahead_s=deadline.step_s)
    assert not preempt.JobDeadline(seconds_left=100.0, margin_s=0.0).near(1e6)  # margin 0: off
    assert not preempt.JobDeadline(seconds_left=None, margin_s=30.0).near(1e6)  # no limit known


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM])
def test_the_flag_takes_slurms_and_submitits_signals(sig):
    flag = preempt.PreemptionFlag()
    try:
        assert not flag.agreed()
        os.kill(os.getpid(), sig)
        assert flag.agreed() and flag.signum == sig
    finally:
        flag.restore()


def test_an_sft_run_stops_before_the_time_limit_and_resumes_exactly(
    shared_data, tmp_path, monkeypatch, capsys
):
    from mtr_hpc.train.sft import run_sft
    from mtr_hpc.train.sft_config import SFTConfig

    traces = tmp_path / "traces.jsonl"
    write_traces(traces, hotpot_traces(shared_data, 12))

    def cfg(out: Path):
        overrides = [f"out={out}", f"data.traces=[{traces}]", "data.seq_len=512", "train.steps=3",
                     "model.hf=" + str(REPO / "configs/models/tiny-llama"), "export_hf=false"]  # fmt: skip
        return load_config(SFTConfig, REPO / "configs" / "sft-tiny.yaml", overrides)

    full = run_sft(cfg(tmp_path / "full"))
    # 30 s left of the job, 60 s of margin: the run stops after its first step, saved.
    monkeypatch.setattr(preempt, "slurm_seconds_left", lambda: 30.0)
    stopped = run_sft(cfg(tmp_path / "cut"))
    assert stopped["preempted"]
    assert "stopped after step 1 (the job's time limit is near" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "cut" / "checkpoints").glob("step_*")] == ["step_000001"]
    assert not (tmp_path / "cut" / "manifest.json").exists()  # a manifest marks a finished run
    monkeypatch.setattr(preempt, "slurm_seconds_left", lambda: None)
    resumed = run_sft(cfg(tmp_path / "cut"))
    assert not resumed["preempted"] and full["steps"] == resumed["steps"] == 3
    assert (tmp_path / "cut" / "manifest.json").exists()
    losses = {k: [(r["step"], r["sft/loss"]) for r in read_metrics(tmp_path / k)] for k in ("full", "cut")}
    assert losses["cut"] == losses["full"]


def test_a_grpo_step_stops_between_rollout_and_update_and_is_taken_again(tmp_path, monkeypatch):
    """A signal during the rollout of step 1: the update is skipped, the checkpoint is the state before
    step 1 (its batch not consumed), and the resumed run's step 1 is the uninterrupted run's."""
    from mtr_hpc.train import grpo
    from mtr_hpc.train.checkpoint import latest_checkpoint, read_meta
    from mtr_hpc.train.grpo_config import GRPOConfig

    def cfg(out: Path):
        overrides = [f"out={out}", f"model.hf={REPO / 'configs/models/tiny-llama'}", "export_hf=false"]
        return load_config(GRPOConfig, REPO / "configs" / "grpo-tiny.yaml", overrides)

    grpo.run_grpo(cfg(tmp_path / "full"))
    real, updates = grpo.gather_rollouts, []
    real_update = grpo.policy_update

    def gather(share):
        payload = real(share)
        if len(updates) == 1:  # step 1's rollout is done: the job is told to stop
            os.kill(os.getpid(), signal.SIGUSR2)
        return payload

    def update(*args, **kwargs):
        updates.append(1)
        return real_update(*args, **kwargs)

    monkeypatch.setattr(grpo, "gather_rollouts", gather)
    monkeypatch.setattr(grpo, "policy_update", update)
    stopped = grpo.run_grpo(cfg(tmp_path / "cut"))
    assert stopped["preempted"] and len(updates) == 1
    meta = read_meta(latest_checkpoint(tmp_path / "cut" / "checkpoints"))
    assert meta["step"] == 1 and meta["position"] == {"epoch": 0, "index": 2}
    assert [r["step"] for r in read_metrics(tmp_path / "cut")] == [0]  # the stopped step logs nothing
    monkeypatch.setattr(grpo, "gather_rollouts", real)
    grpo.run_grpo(cfg(tmp_path / "cut"))
    full, cut = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "cut")
    assert [r["step"] for r in cut] == [0, 1]
    for a, b in zip(full, cut, strict=True):
        for key in ("grpo/reward/total", "grpo/loss", "grpo/response_length"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), key


def test_a_submitit_warning_at_or_before_the_start_is_refused(tmp_path):
    from mtr_hpc.errors import ConfigError
    from mtr_hpc.launch.submitit_launch import LaunchOptions, make_executor

    with pytest.raises(ConfigError, match=r"--signal-delay-s.*below the time limit \(1 min\)"):
        make_executor(LaunchOptions(time_min=1, signal_delay_s=90), tmp_path, "sft")
    make_executor(LaunchOptions(time_min=1, signal_delay_s=30), tmp_path, "sft")  # accepted
