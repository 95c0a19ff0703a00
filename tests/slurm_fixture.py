"""pytest plugin: `slurm_cluster`, a real single-node Slurm cluster on localhost for the whole session.

The cluster is `tools/slurm_cluster.py` started in a pytest temporary directory and stopped at teardown.
Missing Slurm programs FAIL the tests that use it (with the set-up command to run); set
`MTR_SKIP_SLURM=1` to skip them instead, e.g. on a machine where you are not root.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from _paths import REPO

SCRIPT = REPO / "tools" / "slurm_cluster.py"
SKIP_ENV = "MTR_SKIP_SLURM"
TOOL_MODULE = "mtr_slurm_cluster_tool"
# Job states after which squeue will not report a change any more.
FINAL_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "BOOT_FAIL",
        "DEADLINE",
        "PREEMPTED",
    }
)


def load_cluster_tool() -> ModuleType:
    """tools/ is not a package: load the script as a module, once, to share its code with the fixture."""
    if TOOL_MODULE in sys.modules:
        return sys.modules[TOOL_MODULE]
    spec = importlib.util.spec_from_file_location(TOOL_MODULE, SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs: its dataclasses look their module up while being built.
    sys.modules[TOOL_MODULE] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class SlurmCluster:
    """A running cluster: its state dir, slurm.conf, the client environment and small job helpers."""

    state_dir: Path
    conf: Path
    env: dict[str, str]

    def run(self, args: Sequence[str], timeout: float = 30, **kwargs) -> subprocess.CompletedProcess[str]:
        """Runs a Slurm client command against this cluster; fails the test if it exits non-zero."""
        result = subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
        )
        if result.returncode != 0:
            pytest.fail(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def sbatch(self, args: Sequence[str], script: str | None = None, cwd: Path | None = None) -> str:
        """Submits a batch job; returns its id.

        `script` is the text of the batch script (sent on stdin); leave it out when `args` end with a
        script file and its arguments. The job runs from `cwd` (default: `<state_dir>/jobs`, so that
        default `slurm-%j.out` files do not land in the working tree); pass `--chdir` or absolute paths
        where a script needs the repository as its working directory.
        """
        workdir = cwd or self.state_dir / "jobs"
        workdir.mkdir(exist_ok=True)
        result = self.run(["sbatch", "--parsable", *args], input=script or "", cwd=workdir)
        return result.stdout.strip().split(";")[0]

    def states(self, job_id: str) -> dict[str, str]:
        """State of the job, or of each array task (`ID_TASK`; a pending range shows as `ID_[a-b]`)."""
        out = self.run(["squeue", "--states=all", "-h", "-o", "%F\t%A\t%i\t%T"]).stdout
        found = {}
        for line in out.splitlines():
            array_id, raw_id, shown_id, state = line.split("\t")
            if job_id in (array_id, raw_id, shown_id):
                found[shown_id] = state
        return found

    def wait(self, job_id: str, timeout: float = 60) -> str:
        """Waits until the job (every task of an array) has ended; returns its final state.

        An array whose tasks ended differently returns the first non-COMPLETED state. On timeout the
        test fails with `scontrol show job`'s view of the job.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.states(job_id)
            if states and all(state in FINAL_STATES for state in states.values()):
                failed = sorted(s for s in states.values() if s != "COMPLETED")
                return failed[0] if failed else "COMPLETED"
            time.sleep(0.2)
        shown = subprocess.run(
            ["scontrol", "show", "job", job_id], env=self.env, capture_output=True, text=True
        )
        pytest.fail(f"job {job_id} did not end within {timeout} s:\n{shown.stdout}{shown.stderr}")


def start_session_cluster(state_dir: Path) -> SlurmCluster:
    tool = load_cluster_tool()
    missing = tool.missing_binaries()
    if missing:
        pytest.fail(
            f"Slurm/munge programs not found ({', '.join(missing)}): run `bash tools/setup.sh --test` as root, "
            f"or set {SKIP_ENV}=1 to skip the Slurm tests"
        )
    try:
        layout = tool.start(state_dir)
    except tool.ClusterError as exc:
        pytest.fail(
            f"the local Slurm cluster did not start (set {SKIP_ENV}=1 to skip the Slurm tests):\n{exc}"
        )
    return SlurmCluster(state_dir=layout.state_dir, conf=layout.conf, env=tool.client_env(layout))


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: Slurm cluster tests skipped")
    cluster = start_session_cluster(tmp_path_factory.mktemp("slurm", numbered=True))
    try:
        yield cluster
    finally:
        load_cluster_tool().stop(cluster.state_dir)
