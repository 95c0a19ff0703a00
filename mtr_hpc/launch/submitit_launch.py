"""Submitting a registered stage (`mtr_hpc.stages`) with submitit: a Slurm job (array) or local processes.

`launch(stage, config_path, overrides, opts)` submits one task, or for an `array` stage `opts.num_tasks`
tasks through `executor.map_array` (one Slurm job array), waits for them (unless `wait=False`) and, with
`opts.merge`, runs the stage's merge entry on the run directory. Each task runs `stages.run_stage`, which
loads the config and imports the stage's entry in the job, with the Python interpreter of the submitting process (submitit's default:
the job sees the same virtual environment, which must therefore be on a filesystem the nodes share).

The `llm` synthesis backends need an endpoint: through submitit, give one (`llm.base_url=...`);
`slurm/synth.sbatch` is the path that starts `vllm serve` inside each task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import apply_overrides, read_yaml
from ..errors import ConfigError, MtrError, require
from ..stages import get_stage, resolve, run_stage


class LaunchError(MtrError):
    """A submitted task failed; the message names the task and the log files submitit kept."""


@dataclass
class LaunchOptions:
    executor: Literal["slurm", "local"] = "slurm"
    num_tasks: int = 1
    folder: str = ""  # submitit's logs and pickles; default <out>/submitit
    partition: str | None = None
    time_min: int = 60
    # submitit's warning (SIGUSR2) this many seconds before the time limit; it must come before it.
    signal_delay_s: int = 90
    cpus_per_task: int = 1
    nodes: int = 1
    tasks_per_node: int = 1  # distributed stages: ranks per node (one per GPU)
    gpus_per_node: int = 0
    mem_gb: float | None = None
    array_parallelism: int = 256
    job_name: str = ""
    slurm_extra: dict[str, Any] = field(default_factory=dict)  # passed to SlurmExecutor.update_parameters
    merge: bool = False
    wait: bool = True


@dataclass
class LaunchResult:
    stage: str
    out: str
    job_ids: list[str]
    results: list[Any] = field(default_factory=list)
    merged: Any = None


def out_dir_of(config_path: str | None, overrides: list[str], section: str) -> str:
    """The run directory a stage config names (`out`, after overrides; a multi-stage file's section)."""
    data = read_yaml(config_path) if config_path else {}
    if isinstance(data.get(section), dict):
        data = data[section]
    out = apply_overrides(data, overrides, strip_prefix=section).get("out")
    if not out:
        raise ConfigError("out", "the run directory is not set: give --out DIR or `out:` in the config")
    return str(out)


def make_executor(opts: LaunchOptions, folder: Path, name: str):
    submitit = require("submitit", "mtr launch")
    if opts.executor == "local":
        ex = submitit.LocalExecutor(folder=str(folder))
        ex.update_parameters(timeout_min=opts.time_min, tasks_per_node=opts.tasks_per_node)
        return ex
    if opts.executor != "slurm":
        raise ConfigError("--executor", f"must be slurm or local, got {opts.executor!r}")
    if not 0 < opts.signal_delay_s < opts.time_min * 60:
        raise ConfigError(
            "--signal-delay-s",
            f"{opts.signal_delay_s} s must be above 0 and below the time limit ({opts.time_min} min): a warning "
            "at or before the job's start would requeue it before it has done anything, over and over",
        )
    ex = submitit.SlurmExecutor(folder=str(folder))
    params: dict[str, Any] = {
        "job_name": opts.job_name or f"mtr-{name}",
        "time": opts.time_min,
        "signal_delay_s": opts.signal_delay_s,
        "cpus_per_task": opts.cpus_per_task,
        "nodes": opts.nodes,
        "ntasks_per_node": opts.tasks_per_node,
        "array_parallelism": opts.array_parallelism,
    }
    if opts.partition:
        params["partition"] = opts.partition
    if opts.gpus_per_node:
        params["gpus_per_node"] = opts.gpus_per_node
    if opts.mem_gb:
        params["mem"] = f"{int(opts.mem_gb * 1024)}M"
    ex.update_parameters(**params, **opts.slurm_extra)
    return ex


def launch(
    stage_name: str, config_path: str | None, overrides: list[str], opts: LaunchOptions
) -> LaunchResult:
    stage = get_stage(stage_name)
    if opts.num_tasks < 1:
        raise ConfigError("--num-tasks", f"must be >= 1, got {opts.num_tasks}")
    if opts.num_tasks > 1 and not stage.array:
        raise ConfigError("--num-shards", f"stage '{stage_name}' runs as one task, not an array")
    out = out_dir_of(config_path, overrides, stage_name)
    folder = Path(opts.folder or Path(out) / "submitit")
    executor = make_executor(opts, folder, stage_name)
    if stage.array:
        n = opts.num_tasks
        task_overrides = [[*overrides, f"num_shards={n}", f"shard_index={i}"] for i in range(n)]
        jobs = executor.map_array(run_stage, [stage_name] * n, [config_path] * n, task_overrides)
    elif stage.distributed:
        from .train_task import TrainTask

        jobs = [executor.submit(TrainTask(stage_name, config_path, list(overrides)))]
    else:
        jobs = [executor.submit(run_stage, stage_name, config_path, list(overrides))]
    result = LaunchResult(stage_name, out, [str(j.job_id) for j in jobs])
    if not opts.wait:
        return result
    for i, job in enumerate(jobs):
        try:
            # A multi-task job returns one result per task; rank 0's speaks for the stage.
            out_i = job.results() if stage.distributed else [job.result()]
            result.results.append(out_i[0])
        except Exception as exc:  # submitit raises its own FailedJobError / UncompletedJobError
            raise LaunchError(
                f"{stage_name} task {i} (job {job.job_id}) failed: {exc}\nlogs: {job.paths.stdout}, "
                f"{job.paths.stderr}"
            ) from None
    if opts.merge and stage.merge:
        result.merged = resolve(stage.merge)(out)
    return result
