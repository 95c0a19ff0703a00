"""SFT and GRPO on the local Slurm cluster: sbatch with srun-native ranks (TP=2 as 2 tasks) and submitit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _traces import hotpot_traces

from mtr_hpc.trace.io import write_traces
from mtr_hpc.tracking import read_metrics

# Multi-second tests (real clusters, several ranks or real models): out of `-m "not slow"`.
pytestmark = pytest.mark.slow

TINY = ["model.hf=configs/models/tiny-llama", "export_hf=false", "wandb.mode=disabled"]


@pytest.fixture(scope="module")
def trace_file(shared_data, tmp_path_factory):
    path = tmp_path_factory.mktemp("slurm-traces") / "traces.jsonl"
    write_traces(path, hotpot_traces(shared_data, 12, seed=5))
    return path


def _losses(run: Path, key: str) -> list[float]:
    return [r[key] for r in read_metrics(run)]


def _sbatch(cluster, repo_root: Path, script: str, tasks: int, args: list[str], log: Path) -> str:
    job = cluster.sbatch(
        [
            f"--ntasks-per-node={tasks}", "--cpus-per-task=1", "--gpus-per-node=0", f"--output={log}",
            "--export=ALL,MTR_DEVICE=cpu,OMP_NUM_THREADS=1", script, *args,
        ],
        cwd=repo_root,
    )  # fmt: skip
    state = cluster.wait(job, timeout=400)
    assert state == "COMPLETED", log.read_text()[-3000:]
    return job


def test_sft_sbatch_tensor_parallel_two_tasks(slurm_cluster, repo_root, trace_file, tmp_path):
    out = tmp_path / "sft-tp2"
    args = [
        "configs/sft-tiny.yaml",
        f"out={out}",
        f"data.traces=[{trace_file}]",
        "model.tp=2",
        "train.steps=2",
        *TINY,
    ]
    _sbatch(slurm_cluster, repo_root, "slurm/sft.sbatch", 2, args, tmp_path / "sft.log")
    meta = json.loads((out / "checkpoints" / "step_000002" / "meta.json").read_text())
    assert meta["tp"] == 2 and meta["dp"] == 1
    assert len(list((out / "checkpoints" / "step_000002").glob("rank_*.pt"))) == 2
    assert len(_losses(out, "sft/loss")) == 2


def test_sft_submitit_two_tasks_matches_sbatch_run(slurm_cluster, repo_root, trace_file, tmp_path):
    outs = {}
    for how in ("sbatch", "submitit"):
        out = tmp_path / how
        overrides = [f"data.traces=[{trace_file}]", "model.tp=2", "train.steps=2", *TINY]
        if how == "sbatch":
            _sbatch(
                slurm_cluster,
                repo_root,
                "slurm/sft.sbatch",
                2,
                ["configs/sft-tiny.yaml", f"out={out}", *overrides],
                tmp_path / "s.log",
            )
        else:
            res = subprocess.run(
                [
                    sys.executable, "-m", "mtr_hpc", "launch", "sft", "device=cpu", *overrides,
                    "--executor", "slurm", "--config", "configs/sft-tiny.yaml", "--out", str(out),
                    "--tasks-per-node", "2", "--time-min", "10", "--json",
                ],
                cwd=repo_root, env={**slurm_cluster.env, "OMP_NUM_THREADS": "1"},
                capture_output=True, text=True, timeout=400,
            )  # fmt: skip
            assert res.returncode == 0, res.stderr[-3000:]
            assert json.loads(res.stdout)["results"][0]["steps"] == 2
        outs[how] = _losses(out, "sft/loss")
    assert outs["submitit"] == pytest.approx(outs["sbatch"], abs=1e-6)


def test_grpo_sbatch_and_submitit(slurm_cluster, repo_root, tmp_path):
    base = ["configs/grpo-tiny.yaml", "train.steps=1", "algo.kl_coef=0.0", *TINY]
    out = tmp_path / "grpo-sbatch"
    _sbatch(slurm_cluster, repo_root, "slurm/grpo.sbatch", 1, [*base, f"out={out}"], tmp_path / "g.log")
    assert (out / "checkpoints" / "latest").exists()
    out2 = tmp_path / "grpo-submitit"
    res = subprocess.run(
        [
            sys.executable, "-m", "mtr_hpc", "launch", "grpo", "device=cpu", *base[1:],
            "--executor", "slurm", "--config", base[0], "--out", str(out2), "--time-min", "10", "--json",
        ],
        cwd=repo_root, env=slurm_cluster.env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert _losses(out2, "grpo/reward/total") == pytest.approx(_losses(out, "grpo/reward/total"))


# SIGUSR1 to the ranks (Slurm's time-limit warning); then the same with a SIGTERM to the batch script
# while the ranks save, which stage.sh must outlive to requeue. (A SIGTERM that reaches srun itself makes
# srun kill the step at once: that is why the ranks stop on the clock, before Slurm's SIGTERM.)
@pytest.mark.parametrize(
    "signals",
    [[["--signal=USR1"]], [["--signal=USR1"], ["--signal=TERM", "--batch"]]],
    ids=["usr1", "usr1-then-term-to-the-script"],
)
def test_preempted_sbatch_job_checkpoints_requeues_and_resumes(
    slurm_cluster, repo_root, trace_file, tmp_path, signals
):
    """A signal to both ranks of a TP=2 job: they save, stage.sh requeues the job, the rerun resumes and
    finishes; the losses are those of an uninterrupted run (the srun step must not end in SIGKILL)."""
    import time

    steps = 30
    overrides = [f"data.traces=[{trace_file}]", "model.tp=2", f"train.steps={steps}", "train.save_every=1000",
                 "train.eval_every=1000", *TINY]  # fmt: skip
    out = tmp_path / "preempted"
    log = tmp_path / "p.log"
    job = slurm_cluster.sbatch(
        [
            "--ntasks-per-node=2", "--cpus-per-task=1", "--gpus-per-node=0", f"--output={log}", "--open-mode=append",
            "--export=ALL,MTR_DEVICE=cpu,OMP_NUM_THREADS=1", "slurm/sft.sbatch", "configs/sft-tiny.yaml",
            f"out={out}", *overrides,
        ],
        cwd=repo_root,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not ((out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text().count("\n") >= 2):
        assert time.monotonic() < deadline, log.read_text()[-3000:] if log.exists() else "no log"
        time.sleep(0.2)
    for args in signals:
        slurm_cluster.run(["scancel", *args, job])
    state = slurm_cluster.wait(job, timeout=400)
    text = log.read_text()
    assert state == "COMPLETED", text[-3000:]
    assert "requeueing job" in text
    shown = slurm_cluster.run(["scontrol", "show", "job", job]).stdout
    assert "Restarts=1" in shown
    steps_logged = [r["step"] for r in read_metrics(out)]
    assert sorted(set(steps_logged)) == list(range(steps)) and steps_logged[-1] == steps - 1
    assert not list(repo_root.glob(f".mtr-requeue-{job}"))
    reference = tmp_path / "reference"
    _sbatch(slurm_cluster, repo_root, "slurm/sft.sbatch", 2,
            ["configs/sft-tiny.yaml", f"out={reference}", *overrides], tmp_path / "r.log")  # fmt: skip
    assert _losses(out, "sft/loss")[-1] == pytest.approx(_losses(reference, "sft/loss")[-1], abs=1e-6)


def test_a_job_with_a_one_minute_limit_stops_in_time_requeues_and_resumes(
    slurm_cluster, repo_root, trace_file, tmp_path
):
    """`--time=1`: the run stops on its own before the limit (55 s of margin: after its first step),
    saves, and is requeued; the rerun resumes and finishes. No signal is needed for this. (Slurm holds a
    requeued job for about two minutes, so one requeue is the test.)"""
    out, log = tmp_path / "limited", tmp_path / "l.log"
    overrides = [f"data.traces=[{trace_file}]", "train.steps=2", "train.save_every=1000",
                 "train.eval_every=1000", "train.time_limit_margin_s=55", *TINY]  # fmt: skip
    job = slurm_cluster.sbatch(
        [
            "--ntasks-per-node=1", "--cpus-per-task=1", "--gpus-per-node=0", f"--output={log}", "--open-mode=append",
            "--time=1", "--export=ALL,MTR_DEVICE=cpu,OMP_NUM_THREADS=1", "slurm/sft.sbatch",
            "configs/sft-tiny.yaml", f"out={out}", *overrides,
        ],
        cwd=repo_root,
    )  # fmt: skip
    state = slurm_cluster.wait(job, timeout=400)
    text = log.read_text()
    assert state == "COMPLETED", text[-3000:]
    assert text.count("requeueing job") == 1 and text.count("stopped after step 1") == 1
    assert "Restarts=1" in slurm_cluster.run(["scontrol", "show", "job", job]).stdout
    assert [r["step"] for r in read_metrics(out)] == [0, 1]


def test_a_submitit_job_stops_in_time_and_submitit_requeues_it(
    slurm_cluster, repo_root, trace_file, tmp_path
):
    """The same through `mtr launch` (submitit, `--time-min 1`): the run saves, hands submitit its
    signal, submitit requeues the job, and the rerun finishes from the checkpoint. submitit's own
    warning comes 5 s before the limit, so only the clock stops the runs. (`--no-wait`, then
    the job's own state: the stand-in `sacct` can show a requeued job's exit as FAILED for a moment,
    which submitit's wait would take for the end.)"""
    import time

    out = tmp_path / "submitit-limited"
    overrides = [f"data.traces=[{trace_file}]", "train.steps=2", "train.time_limit_margin_s=55", *TINY]
    res = subprocess.run(
        [
            sys.executable, "-m", "mtr_hpc", "launch", "sft", "device=cpu", *overrides,
            "--executor", "slurm", "--config", "configs/sft-tiny.yaml", "--out", str(out),
            "--time-min", "1", "--signal-delay-s", "5", "--json", "--no-wait",
        ],
        cwd=repo_root, env={**slurm_cluster.env, "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    job = json.loads(res.stdout)["job_ids"][0]
    deadline = time.monotonic() + 300
    while not ((out / "manifest.json").is_file() and slurm_cluster.wait(job, timeout=300) == "COMPLETED"):
        assert time.monotonic() < deadline, slurm_cluster.run(["scontrol", "show", "job", job]).stdout
        time.sleep(1)
    assert "Restarts=1" in slurm_cluster.run(["scontrol", "show", "job", job]).stdout
    assert [r["step"] for r in read_metrics(out)] == [0, 1]  # step 1 by the requeued run, resumed
