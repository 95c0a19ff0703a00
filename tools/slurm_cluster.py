#!/usr/bin/env python3
"""A real single-node Slurm cluster on localhost: munged + slurmctld + slurmd, for tests and laptops.

    python3 tools/slurm_cluster.py start  [--state-dir DIR] [--timeout S] [--cpu-factor N] [--gpus N]
    python3 tools/slurm_cluster.py stop   [--state-dir DIR]
    python3 tools/slurm_cluster.py status [--state-dir DIR]
    python3 tools/slurm_cluster.py env    [--state-dir DIR] [--json]
    eval "$(python3 tools/slurm_cluster.py env)"; sbatch ...; squeue

Everything (slurm.conf, munge key and socket, spool, saved state, pid and log files) lives in the state
directory (default: `<tempdir>/mtr-slurm`); nothing is read from or written to /etc/slurm or /etc/munge.
Daemons and clients find the cluster through `SLURM_CONF`; the munge socket is named in `AuthInfo`.

Choices, and why:
- Ports are drawn at random and checked free, so two clusters (or a stale one) on one host do not clash.
- The node declares `cpu-factor` x nproc CPUs (`SlurmdParameters=config_overrides` makes slurmd accept
  more than it counts), so an array of 4 single-CPU tasks, or `srun --ntasks=4`, runs on a 2-core
  machine without `--overcommit`. Oversubscribing the partition instead (`OverSubscribe=FORCE:4`) would
  share CPUs between jobs but still refuse a single job asking for more tasks than cores.
- Accounting is off (no slurmdbd/MySQL to run), so the real `sacct` only answers "accounting storage is
  disabled". submitit polls job state with `sacct -o JobID,State,NodeList --parsable2 -j ID`, so
  `<state>/bin/sacct` (first on the cluster's PATH) answers those queries from slurmctld's in-memory job
  table via `squeue --states=all`; `MinJobAge` keeps finished jobs there for a day.
- `--gpus` count-only GPUs (default 8, device files are /dev/null-like nodes in the state dir): the
  project's GPU batch scripts are accepted as written and run their CPU path.
- `proctrack/linuxproc` and `task/none`: containers rarely offer the cgroup hierarchy Slurm wants.

Standard library only: it runs before the project's virtual environment exists. Needs root (slurmd
launches jobs as their submitting user) and the Debian packages `slurm-wlm` and `munge`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "sinfo", "scontrol", "scancel")
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
SETUP_HINT = "run `bash tools/setup.sh --test` as root (it installs the Debian packages slurm-wlm and munge)"
CLUSTER_NAME = "mtr"
PARTITION = "debug"
PORT_RANGE = (10000, 20000)


class ClusterError(RuntimeError):
    """The cluster could not be started, queried or stopped; the message says why and what to do."""


@dataclass(frozen=True)
class Layout:
    """Where each file of one cluster lives, all under `state_dir`."""

    state_dir: Path

    @property
    def conf(self) -> Path:
        return self.state_dir / "slurm.conf"

    @property
    def munge_dir(self) -> Path:
        return self.state_dir / "munge"

    @property
    def munge_key(self) -> Path:
        return self.munge_dir / "munge.key"

    @property
    def munge_socket(self) -> Path:
        return self.munge_dir / "munge.socket"

    @property
    def bin_dir(self) -> Path:
        return self.state_dir / "bin"

    @property
    def spool_dir(self) -> Path:
        return self.state_dir / "spool"

    @property
    def save_dir(self) -> Path:
        return self.state_dir / "state"

    def pid_file(self, daemon: str) -> Path:
        return self.state_dir / "run" / f"{daemon}.pid"

    def log_file(self, daemon: str) -> Path:
        return self.state_dir / "log" / f"{daemon}.log"


@dataclass(frozen=True)
class NodeSpec:
    """The one compute node: this host, as Slurm is told to see it."""

    hostname: str
    cpus: int
    memory_mb: int
    gpus: int


def default_state_dir() -> Path:
    return Path(tempfile.gettempdir()) / "mtr-slurm"


def find_binary(name: str) -> str | None:
    # Daemons live in /usr/sbin, which a non-login shell's PATH may lack.
    found = shutil.which(name)
    if found:
        return found
    for folder in SBIN_DIRS:
        path = Path(folder) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def missing_binaries() -> list[str]:
    return [name for name in (*DAEMONS, *CLIENTS) if find_binary(name) is None]


def detect_node(cpu_factor: int, gpus: int = 0) -> NodeSpec:
    total_kb = 0
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                total_kb = int(line.split()[1])
    total_mb = total_kb // 1024
    # Headroom keeps RealMemory under what slurmd measures; a node claiming more is drained.
    memory_mb = max(256, total_mb - max(512, total_mb // 10))
    hostname = socket.gethostname().split(".")[0]
    return NodeSpec(
        hostname=hostname, cpus=max(1, os.cpu_count() or 1) * cpu_factor, memory_mb=memory_mb, gpus=gpus
    )


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    # Below the kernel's ephemeral ports (32768+) and the MASTER_PORT range of slurm/sft.sbatch (20000+).
    ports: list[int] = []
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(*PORT_RANGE)
        if port not in ports and port_is_free(port):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise ClusterError(f"no free TCP port found in {PORT_RANGE}")


def render_conf(layout: Layout, node: NodeSpec, ctld_port: int, slurmd_port: int) -> str:
    lines = {
        "ClusterName": CLUSTER_NAME,
        "SlurmctldHost": f"{node.hostname}(127.0.0.1)",
        "SlurmctldPort": ctld_port,
        "SlurmdPort": slurmd_port,
        "AuthType": "auth/munge",
        "CredType": "cred/munge",
        "AuthInfo": f"socket={layout.munge_socket}",
        "SlurmUser": "root",
        "SlurmdUser": "root",
        "StateSaveLocation": layout.save_dir,
        "SlurmdSpoolDir": layout.spool_dir,
        "SlurmctldPidFile": layout.pid_file("slurmctld"),
        "SlurmdPidFile": layout.pid_file("slurmd"),
        "SlurmctldLogFile": layout.log_file("slurmctld"),
        "SlurmdLogFile": layout.log_file("slurmd"),
        "SlurmctldDebug": "info",
        "SlurmdDebug": "info",
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        "JobAcctGatherType": "jobacct_gather/none",
        "AccountingStorageType": "accounting_storage/none",
        "JobCompType": "jobcomp/none",
        "MpiDefault": "none",
        "MailProg": "/bin/true",
        "GresTypes": "gpu",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_CPU",
        "SlurmdParameters": "config_overrides",
        "ReturnToService": 2,
        # Short timeouts: a dead daemon or a stuck job shows up in seconds, not minutes.
        "SlurmctldTimeout": 10,
        "SlurmdTimeout": 30,
        "MessageTimeout": 5,
        "TCPTimeout": 2,
        "BatchStartTimeout": 10,
        "InactiveLimit": 0,
        "KillWait": 2,
        "WaitTime": 0,
        # Finished jobs stay in slurmctld's memory a day: with accounting off, that is where their state is.
        "MinJobAge": 86400,
        # Schedule at submit time, without the default batching delay, so a test job starts in well
        # under a second.
        "SchedulerParameters": "batch_sched_delay=0,sched_min_interval=0",
    }
    text = "".join(f"{key}={value}\n" for key, value in lines.items())
    text += (
        f"NodeName={node.hostname} NodeAddr=127.0.0.1 NodeHostname={node.hostname} "
        f"CPUs={node.cpus} RealMemory={node.memory_mb}{f' Gres=gpu:{node.gpus}' if node.gpus else ''} State=UNKNOWN\n"
        f"PartitionName={PARTITION} Nodes={node.hostname} Default=YES MaxTime=INFINITE State=UP\n"
    )
    return "# Generated by tools/slurm_cluster.py; regenerated at every start.\n" + text


def fake_gpu_devices(layout: Layout, count: int) -> list[Path]:
    """Device files for count-only GPUs: they exist so that the project's GPU batch scripts
    (`--gpus-per-node=N`) are accepted here and run their CPU path. slurmd wants character devices;
    these are copies of /dev/null (a regular file, where mknod is refused, only costs a log line)."""
    devices = [layout.state_dir / "dev" / f"gpu{index}" for index in range(count)]
    for device in devices:
        device.parent.mkdir(exist_ok=True)
        if device.exists():
            continue
        try:
            os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except OSError:
            device.touch()
    return devices


def render_gres_conf(node: NodeSpec, devices: list[Path]) -> str:
    lines = ["AutoDetect=off"]
    lines += [f"NodeName={node.hostname} Name=gpu File={device}" for device in devices]
    return "".join(f"{line}\n" for line in lines)


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Atomic write with the final permissions set before the file appears under its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def ensure_munge_key(layout: Layout) -> None:
    # munged refuses a key readable by others or owned by another user than the one it runs as.
    if not layout.munge_key.exists():
        write_file(layout.munge_key, os.urandom(128), 0o600)
    os.chown(layout.munge_key, os.getuid(), os.getgid())
    os.chmod(layout.munge_key, 0o600)


def write_sacct_shim(layout: Layout) -> None:
    script = Path(__file__).resolve()
    body = (
        "#!/bin/sh\n"
        "# sacct for a cluster without accounting: answers from slurmctld's job table (see slurm_cluster.py)\n"
        f"exec {shlex.quote(sys.executable)} {shlex.quote(str(script))} sacct "
        f'--state-dir {shlex.quote(str(layout.state_dir))} "$@"\n'
    )
    write_file(layout.bin_dir / "sacct", body.encode(), 0o755)


def client_env(layout: Layout, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["SLURM_CONF"] = str(layout.conf)
    env["PATH"] = os.pathsep.join([str(layout.bin_dir), env.get("PATH", ""), *SBIN_DIRS])
    return env


def run_client(layout: Layout, args: list[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=client_env(layout), capture_output=True, text=True, timeout=timeout, check=False
    )


def read_pid(layout: Layout, daemon: str) -> int | None:
    try:
        return int(layout.pid_file(daemon).read_text().strip())
    except (OSError, ValueError):
        return None


def is_ours(pid: int, layout: Layout) -> bool:
    """Alive, not a zombie, and started for this state dir (a recycled pid belongs to someone else)."""
    try:
        proc_stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    state = proc_stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and str(layout.state_dir) in cmdline


def running_daemons(layout: Layout) -> dict[str, int]:
    found = {}
    for daemon in DAEMONS:
        pid = read_pid(layout, daemon)
        if pid is not None and is_ours(pid, layout):
            found[daemon] = pid
    return found


def log_tails(layout: Layout, lines: int = 25) -> str:
    parts = []
    for daemon in DAEMONS:
        path = layout.log_file(daemon)
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(no log)"]
        parts.append(f"--- {path} ---\n" + "\n".join(text))
    return "\n".join(parts)


def launch(layout: Layout, daemon: str, args: list[str]) -> None:
    """Runs a daemon that forks itself into the background; fails with its log if it exits early."""
    binary = find_binary(daemon)
    assert binary is not None  # checked by start()
    startup_log = layout.state_dir / "log" / f"{daemon}.startup"
    with open(startup_log, "wb") as out:
        try:
            result = subprocess.run(
                [binary, *args],
                env=client_env(layout),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                timeout=30,
            )
        except subprocess.TimeoutExpired:
            raise ClusterError(
                f"{daemon} did not go to the background within 30 s\n" + log_tails(layout)
            ) from None
    if result.returncode != 0:
        raise ClusterError(
            f"{daemon} exited with status {result.returncode}:\n{startup_log.read_text(errors='replace')}\n"
            + log_tails(layout)
        )


def wait_idle(layout: Layout, timeout: float, accept: tuple[str, ...] = ("idle",)) -> None:
    """Waits until sinfo shows the node in one of the `accept` states (a fresh node: idle)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        result = run_client(layout, ["sinfo", "-h", "-N", "-o", "%T"], timeout=10)
        last = (result.stdout + result.stderr).strip()
        if result.returncode == 0 and last in accept:
            return
        time.sleep(0.2)
    raise ClusterError(
        f"the node did not become idle within {timeout:.0f} s (sinfo: {last!r})\n" + log_tails(layout)
    )


def max_state_dir_len(hostname: str) -> int:
    """Unix socket paths under the state dir (munge's; slurmstepd's, named after node and step ids)
    must fit in a socket address (107 bytes)."""
    return 107 - max(len("/munge/munge.socket"), len(f"/spool/{hostname}_4294967294.4294967294"))


def check_prerequisites(layout: Layout) -> None:
    missing = missing_binaries()
    if missing:
        raise ClusterError(f"Slurm/munge programs not found: {', '.join(missing)}; {SETUP_HINT}")
    if os.geteuid() != 0:
        raise ClusterError("the local Slurm cluster must be started as root (slurmd launches the jobs)")
    limit = max_state_dir_len(socket.gethostname().split(".")[0])
    if len(str(layout.state_dir)) > limit:
        raise ClusterError(
            f"state dir {layout.state_dir} is longer than {limit} characters; "
            "the unix sockets under it would not fit in a socket address: choose a shorter --state-dir"
        )


def prepare_state_dir(layout: Layout, node: NodeSpec) -> None:
    """Writes everything the daemons read: folders, munge key, slurm.conf, gres.conf, the sacct stand-in."""
    for folder in (layout.state_dir, layout.spool_dir, layout.save_dir, layout.bin_dir):
        folder.mkdir(parents=True, exist_ok=True)
    for daemon in DAEMONS:
        layout.pid_file(daemon).parent.mkdir(exist_ok=True)
        layout.log_file(daemon).parent.mkdir(exist_ok=True)
    # munged insists that everyone may traverse to its socket; --force (below) lets it run under a
    # private (0700) parent such as pytest's temporary directory.
    layout.munge_dir.mkdir(exist_ok=True)
    os.chmod(layout.munge_dir, 0o755)
    ensure_munge_key(layout)
    ctld_port, slurmd_port = free_ports(2)
    write_file(layout.conf, render_conf(layout, node, ctld_port, slurmd_port).encode(), 0o644)
    gres_conf = render_gres_conf(node, fake_gpu_devices(layout, node.gpus))
    write_file(layout.state_dir / "gres.conf", gres_conf.encode(), 0o644)
    write_sacct_shim(layout)


def launch_daemons(layout: Layout, node: NodeSpec) -> None:
    launch(layout, "munged", [
        "--force", f"--socket={layout.munge_socket}", f"--key-file={layout.munge_key}",
        f"--pid-file={layout.pid_file('munged')}", f"--log-file={layout.log_file('munged')}",
        f"--seed-file={layout.munge_dir / 'munged.seed'}",
    ])  # fmt: skip
    # -c: start from an empty job table, never from a previous run's saved state.
    launch(layout, "slurmctld", ["-c", "-f", str(layout.conf)])
    launch(layout, "slurmd", ["-c", "-f", str(layout.conf), "-N", node.hostname])


def start(state_dir: Path, timeout: float = 30, cpu_factor: int = 4, gpus: int = 8) -> Layout:
    """Starts the cluster and waits until its node is idle. Idempotent: a running cluster is left as it
    is (with its first start's settings)."""
    layout = Layout(Path(state_dir).resolve())
    check_prerequisites(layout)
    if len(running_daemons(layout)) == len(DAEMONS):
        wait_idle(layout, timeout, accept=("idle", "mixed", "allocated"))
        return layout
    stop(state_dir)  # whatever a crashed or half-started cluster left behind
    node = detect_node(cpu_factor, gpus)
    prepare_state_dir(layout, node)
    try:
        launch_daemons(layout, node)
        wait_idle(layout, timeout)
    except BaseException:
        stop(state_dir)
        raise
    return layout


def cancel_jobs(layout: Layout, timeout: float = 10) -> None:
    """Cancels live jobs so that no slurmstepd or job process outlives the daemons."""
    active = ["-h", "-t", "PENDING,RUNNING,SUSPENDED,COMPLETING,CONFIGURING", "-o", "%A"]
    result = run_client(layout, ["squeue", *active], timeout=10)
    job_ids = result.stdout.split()
    if result.returncode != 0 or not job_ids:
        return
    run_client(layout, ["scancel", *job_ids], timeout=10)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run_client(layout, ["squeue", *active]).stdout.strip():
        time.sleep(0.2)


def stop(state_dir: Path, timeout: float = 15) -> list[str]:
    """Stops the daemons recorded in the state dir's pid files; returns their names. Idempotent."""
    layout = Layout(Path(state_dir).resolve())
    running = running_daemons(layout)
    if "slurmctld" in running and "slurmd" in running:
        cancel_jobs(layout)
    for daemon in reversed(DAEMONS):
        pid = running.get(daemon)
        if pid is None:
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while is_ours(pid, layout) and time.monotonic() < deadline:
            time.sleep(0.05)
        if is_ours(pid, layout):
            os.kill(pid, signal.SIGKILL)
    for daemon in DAEMONS:
        layout.pid_file(daemon).unlink(missing_ok=True)
    return list(running)


def status(state_dir: Path) -> tuple[bool, str]:
    layout = Layout(Path(state_dir).resolve())
    running = running_daemons(layout)
    lines = [
        f"{daemon}: " + (f"running (pid {running[daemon]})" if daemon in running else "stopped")
        for daemon in DAEMONS
    ]
    healthy = len(running) == len(DAEMONS)
    if healthy:
        result = run_client(layout, ["sinfo", "-N", "-o", "%N %P %T %c %m"], timeout=10)
        lines.append((result.stdout + result.stderr).rstrip())
    return healthy, "\n".join(lines)


# sacct fields the stand-in can answer, as squeue format codes (sacct's names, matched case-insensitively).
SACCT_FIELDS = {
    "jobid": "%i",
    "jobidraw": "%A",
    "jobname": "%j",
    "state": "%T",
    "nodelist": "%N",
    "partition": "%P",
    "user": "%u",
    "alloccpus": "%C",
    "start": "%S",
    "end": "%e",
    "elapsed": "%M",
    "reason": "%r",
}
SACCT_DEFAULT_FORMAT = "JobID,JobName,Partition,AllocCPUS,State,NodeList"


def sacct(argv: list[str]) -> int:
    """`sacct` for this cluster: the options submitit and people use, answered via `squeue --states=all`."""
    parser = argparse.ArgumentParser(
        prog="sacct", description="sacct stand-in for a local cluster without accounting (slurm_cluster.py)"
    )
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("-o", "--format", action="append", default=[])
    parser.add_argument("-j", "--jobs", action="append", default=[])
    parser.add_argument("-P", "--parsable2", action="store_true")
    parser.add_argument("-p", "--parsable", action="store_true")
    parser.add_argument("-n", "--noheader", action="store_true")
    parser.add_argument("-X", "--allocations", action="store_true", help="accepted; steps are never listed")
    parser.add_argument("-a", "--allusers", action="store_true", help="accepted; all users are listed")
    args = parser.parse_args(argv)
    fields = [f for spec in (args.format or [SACCT_DEFAULT_FORMAT]) for f in spec.split(",") if f]
    unknown = [f for f in fields if f.lower() not in SACCT_FIELDS]
    if unknown:
        parser.error(f"unsupported field(s) {', '.join(unknown)}; supported: {', '.join(SACCT_FIELDS)}")
    wanted = {j for spec in args.jobs for j in spec.split(",") if j}
    codes = ["%F", "%A", "%i", *(SACCT_FIELDS[f.lower()] for f in fields)]
    layout = Layout(args.state_dir.resolve())
    result = run_client(layout, ["squeue", "--states=all", "-h", "-o", "\t".join(codes)])
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        return 1
    rows = []
    for line in result.stdout.splitlines():
        array_id, job_id, shown_id, *values = line.split("\t")
        if not wanted or wanted & {array_id, job_id, shown_id}:
            rows.append(values)
    if args.parsable or args.parsable2:
        end = "|" if args.parsable else ""
        lines = [] if args.noheader else ["|".join(fields) + end]
        lines += ["|".join(row) + end for row in rows]
    else:
        widths = [max(len(c) for c in column) for column in zip(fields, *rows, strict=False)]
        table = rows if args.noheader else [fields, ["-" * w for w in widths], *rows]
        lines = [" ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in table]
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


def env_lines(layout: Layout, as_json: bool) -> str:
    env = client_env(layout)
    if as_json:
        return json.dumps({"SLURM_CONF": env["SLURM_CONF"], "PATH": env["PATH"]})
    return (
        f"export SLURM_CONF={shlex.quote(env['SLURM_CONF'])}\n"
        f'export PATH={shlex.quote(str(layout.bin_dir))}:"$PATH"\n'
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("start", "start the cluster and wait until its node is idle"),
        ("stop", "stop the daemons started in the state dir (idempotent)"),
        ("status", "daemons and node state; exit 1 unless all daemons run"),
        ("env", "print the shell exports that point Slurm clients at the cluster"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--state-dir", type=Path, default=default_state_dir())
        if name == "start":
            sub.add_argument("--timeout", type=float, default=30, help="seconds to wait for an idle node")
            sub.add_argument("--cpu-factor", type=int, default=4, help="CPUs declared per real core")
            sub.add_argument("--gpus", type=int, default=8, help="count-only GPUs declared on the node")
        if name == "env":
            sub.add_argument("--json", action="store_true", help="one JSON object {SLURM_CONF, PATH}")
    commands.add_parser("sacct", help="sacct stand-in (what <state>/bin/sacct runs)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sacct"]:
        return sacct(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.command == "start":
            layout = start(args.state_dir, timeout=args.timeout, cpu_factor=args.cpu_factor, gpus=args.gpus)
            print(f"slurm_cluster: running in {layout.state_dir}", file=sys.stderr)
            print(env_lines(layout, as_json=False), end="")
        elif args.command == "stop":
            stopped = stop(args.state_dir)
            print(f"slurm_cluster: stopped {', '.join(stopped) or 'nothing (not running)'}", file=sys.stderr)
        elif args.command == "status":
            healthy, report = status(args.state_dir)
            print(report)
            return 0 if healthy else 1
        else:
            print(env_lines(Layout(args.state_dir.resolve()), as_json=args.json), end="")
    except ClusterError as exc:
        print(f"slurm_cluster: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
