"""The local Slurm cluster (tools/slurm_cluster.py) runs real batch, array, srun and submitit jobs."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import submitit
from slurm_fixture import SCRIPT, SlurmCluster, load_cluster_tool, start_session_cluster
from submitit.slurm.slurm import SlurmInfoWatcher

# Multi-second tests (real clusters, several ranks or real models): out of `-m "not slow"`.
pytestmark = pytest.mark.slow


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
    # Each task announces itself, then waits (up to 30 s) to see all four: only tasks that hold their
    # CPUs at the same time can all see 4, whatever the number of real cores.
    script = (
        "#!/bin/bash\n"
        f'dir={tmp_path}; out="$dir/task-$SLURM_ARRAY_TASK_ID"\n'
        'echo "$SLURM_ARRAY_TASK_ID $SLURM_ARRAY_TASK_COUNT" > "$out.start"\n'
        'for _ in $(seq 300); do [ "$(ls "$dir" | grep -c start)" -ge 4 ] && break; sleep 0.1; done\n'
        'ls "$dir" | grep -c start > "$out.seen"\n'
    )
    job_id = slurm_cluster.sbatch(
        ["--array=0-3", "--cpus-per-task=1", f"--output={tmp_path}/%A_%a.log"], script
    )
    assert slurm_cluster.wait(job_id, timeout=90) == "COMPLETED"
    assert slurm_cluster.states(job_id) == {f"{job_id}_{i}": "COMPLETED" for i in range(4)}
    starts = [(tmp_path / f"task-{i}.start").read_text().split() for i in range(4)]
    assert starts == [[str(i), "4"] for i in range(4)]
    assert [(tmp_path / f"task-{i}.seen").read_text().strip() for i in range(4)] == ["4"] * 4


def test_srun_runs_two_tasks_with_gpus(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    script = (
        "#!/bin/bash\n"
        f"srun bash -c 'echo \"$SLURM_NTASKS $CUDA_VISIBLE_DEVICES\" > {tmp_path}/proc-$SLURM_PROCID'\n"
    )
    args = ["--ntasks=2", "--gpus-per-node=2", f"--output={tmp_path}/job.log"]
    job_id = slurm_cluster.sbatch(args, script)
    assert slurm_cluster.wait(job_id, timeout=60) == "COMPLETED"
    assert sorted(p.name for p in tmp_path.glob("proc-*")) == ["proc-0", "proc-1"]
    # The node's count-only GPUs are allocated like real ones.
    assert {p.read_text().strip() for p in tmp_path.glob("proc-*")} == {"2 0,1"}


def test_sbatch_runs_a_script_file_from_the_jobs_dir(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    script = tmp_path / "hello.sbatch"
    script.write_text('#!/bin/bash\necho "hello $1 from $PWD"\n')
    job_id = slurm_cluster.sbatch([str(script), "world"])
    assert slurm_cluster.wait(job_id) == "COMPLETED"
    jobs_dir = slurm_cluster.state_dir / "jobs"
    assert (jobs_dir / f"slurm-{job_id}.out").read_text() == f"hello world from {jobs_dir}\n"


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
    # submitit's own state polling (sacct) sees the job end; the result file can land before the
    # controller records the end, on a loaded machine, so poll until a deadline.
    deadline = time.monotonic() + 60
    while job.get_info(mode="force")["State"] != "COMPLETED" and time.monotonic() < deadline:
        time.sleep(1)
    assert job.get_info(mode="force")["State"] == "COMPLETED"


def test_second_cluster_starts_beside_and_stops_cleanly(slurm_cluster: SlurmCluster) -> None:
    # A short path: unix sockets live under the state dir.
    with tempfile.TemporaryDirectory(prefix="mtr-slurm-") as tmp:
        try:
            check_second_cluster(slurm_cluster, Path(tmp) / "c2")
        finally:
            run_tool("stop", "--state-dir", str(Path(tmp) / "c2"))


def check_second_cluster(slurm_cluster: SlurmCluster, state_dir: Path) -> None:
    started = run_tool("start", "--state-dir", str(state_dir))
    assert started.returncode == 0, started.stderr
    assert f"export SLURM_CONF={state_dir / 'slurm.conf'}" in started.stdout
    assert run_tool("status", "--state-dir", str(state_dir)).returncode == 0
    ports = [line for line in (state_dir / "slurm.conf").read_text().splitlines() if "Port=" in line]
    assert set(ports).isdisjoint(slurm_cluster.conf.read_text().splitlines())
    env_json = run_tool("env", "--state-dir", str(state_dir), "--json")
    second = SlurmCluster(state_dir=state_dir, conf=state_dir / "slurm.conf", env=json.loads(env_json.stdout))
    # A job still running at stop: its batch script (under the spool dir) must not outlive the cluster.
    job_id = second.sbatch(["--output=/dev/null"], "#!/bin/bash\nsleep 300\n")
    deadline = time.monotonic() + 30
    # The three daemons, then the job's shell (running its script from the spool dir).
    while len(processes_mentioning(state_dir)) <= 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert second.states(job_id) == {job_id: "RUNNING"}
    assert len(processes_mentioning(state_dir)) > 3

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


def test_fixture_fails_naming_the_setup_command_when_slurm_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(load_cluster_tool(), "missing_binaries", lambda: ["slurmctld"])
    with pytest.raises(
        pytest.fail.Exception, match=r"slurmctld.*bash tools/setup\.sh --test.*MTR_SKIP_SLURM=1"
    ):
        start_session_cluster(tmp_path)
