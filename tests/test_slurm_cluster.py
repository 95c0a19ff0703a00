"""The local Slurm cluster (tools/slurm_cluster.py) runs real batch, array, srun and submitit jobs."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import submitit
from slurm_fixture import SCRIPT, SlurmCluster, load_cluster_tool
from submitit.slurm.slurm import SlurmInfoWatcher


def processes_mentioning(path: Path) -> list[int]:
    """Live (non-zombie) processes whose command line names `path`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if str(path) in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_sinfo_shows_one_idle_node(slurm_cluster: SlurmCluster) -> None:
    out = slurm_cluster.run(["sinfo", "-h", "-N", "-o", "%N|%P|%T|%c"]).stdout.splitlines()
    assert len(out) == 1, out
    node, partition, state, cpus = out[0].split("|")
    assert (partition, state) == ("debug*", "idle")
    assert node == load_cluster_tool().detect_node(1).hostname
    assert int(cpus) >= 4


def test_array_job_runs_four_tasks_at_once(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    script = (
        "#!/bin/bash\n"
        f'out={tmp_path}/task-"$SLURM_ARRAY_TASK_ID"\n'
        'echo "$SLURM_ARRAY_TASK_ID $SLURM_ARRAY_TASK_COUNT $(date +%s.%N)" > "$out.start"\n'
        "sleep 1\n"
        'date +%s.%N > "$out.end"\n'
    )
    job_id = slurm_cluster.sbatch(
        ["--array=0-3", "--cpus-per-task=1", f"--output={tmp_path}/%A_%a.log"], script
    )
    assert slurm_cluster.wait(job_id, timeout=60) == "COMPLETED"
    assert slurm_cluster.states(job_id) == {f"{job_id}_{i}": "COMPLETED" for i in range(4)}
    starts = [(tmp_path / f"task-{i}.start").read_text().split() for i in range(4)]
    assert [s[:2] for s in starts] == [[str(i), "4"] for i in range(4)]
    ends = [float((tmp_path / f"task-{i}.end").read_text()) for i in range(4)]
    # All four single-CPU tasks ran at the same time, whatever the number of real cores.
    assert max(float(s[2]) for s in starts) < min(ends)


def test_srun_runs_two_tasks(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    script = f"#!/bin/bash\nsrun bash -c 'echo \"$SLURM_NTASKS\" > {tmp_path}/proc-$SLURM_PROCID'\n"
    job_id = slurm_cluster.sbatch(["--ntasks=2", f"--output={tmp_path}/job.log"], script)
    assert slurm_cluster.wait(job_id, timeout=60) == "COMPLETED"
    assert sorted(p.name for p in tmp_path.glob("proc-*")) == ["proc-0", "proc-1"]
    assert {p.read_text().strip() for p in tmp_path.glob("proc-*")} == {"2"}


def test_sacct_stand_in_answers_submitit_queries(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    ok = slurm_cluster.sbatch(["--array=0-1", f"--output={tmp_path}/%A_%a.log"], "#!/bin/bash\ntrue\n")
    bad = slurm_cluster.sbatch([f"--output={tmp_path}/bad.log"], "#!/bin/bash\nexit 3\n")
    assert slurm_cluster.wait(ok) == "COMPLETED"
    assert slurm_cluster.wait(bad) == "FAILED"
    query = ["sacct", "-o", "JobID,State,NodeList", "--parsable2", "-j", ok, "-j", bad]
    info = SlurmInfoWatcher().read_info(slurm_cluster.run(query).stdout)
    assert {job: fields["State"] for job, fields in info.items()} == {
        f"{ok}_0": "COMPLETED",
        f"{ok}_1": "COMPLETED",
        bad: "FAILED",
    }
    unsupported = subprocess.run(
        ["sacct", "-o", "MaxRSS"], env=slurm_cluster.env, capture_output=True, text=True, check=False
    )
    assert unsupported.returncode == 2 and "MaxRSS" in unsupported.stderr


def test_submitit_runs_a_function(
    slurm_cluster: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("SLURM_CONF", "PATH"):
        monkeypatch.setenv(key, slurm_cluster.env[key])

    def multiply(a: int, b: int) -> tuple[int, str]:
        import os

        return a * b, os.environ["SLURM_JOB_ID"]

    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    executor.update_parameters(timeout_min=5, slurm_partition="debug")
    job = executor.submit(multiply, 6, 7)
    deadline = time.monotonic() + 60
    while not job.done() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job.result() == (42, job.job_id)
    # submitit's own state polling (sacct) sees the job end.
    assert job.get_info(mode="force")["State"] == "COMPLETED"


def test_second_cluster_starts_beside_and_stops_cleanly(slurm_cluster: SlurmCluster) -> None:
    # A short path: unix sockets live under the state dir.
    with tempfile.TemporaryDirectory(prefix="mtr-slurm-") as tmp:
        check_second_cluster(slurm_cluster, Path(tmp) / "c2")


def check_second_cluster(slurm_cluster: SlurmCluster, state_dir: Path) -> None:
    started = run_tool("start", "--state-dir", str(state_dir))
    assert started.returncode == 0, started.stderr
    assert f"export SLURM_CONF={state_dir / 'slurm.conf'}" in started.stdout
    assert run_tool("status", "--state-dir", str(state_dir)).returncode == 0
    ports = [line for line in (state_dir / "slurm.conf").read_text().splitlines() if "Port=" in line]
    assert set(ports).isdisjoint(slurm_cluster.conf.read_text().splitlines())
    assert processes_mentioning(state_dir)

    assert run_tool("stop", "--state-dir", str(state_dir)).returncode == 0
    assert processes_mentioning(state_dir) == []
    assert run_tool("status", "--state-dir", str(state_dir)).returncode == 1
    again = run_tool("stop", "--state-dir", str(state_dir))
    assert again.returncode == 0 and "not running" in again.stderr
    # The session cluster did not notice.
    node_state = slurm_cluster.run(["sinfo", "-h", "-N", "-o", "%T"]).stdout.strip()
    assert node_state == "idle"


def test_start_names_the_setup_command_when_slurm_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool = load_cluster_tool()
    monkeypatch.setattr(tool, "find_binary", lambda name: None if name == "slurmd" else "/bin/true")
    with pytest.raises(tool.ClusterError, match=r"slurmd.*bash tools/setup\.sh --test"):
        tool.start(tmp_path / "missing")
