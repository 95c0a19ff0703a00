"""The callable submitit runs for the training stages: one per Slurm task, checkpointable.

Each task maps submitit's view of the job (global rank, task count, first node) onto the
torch.distributed environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and runs the
stage in-process. submitit asks a job to stop with SIGUSR2 (`SUBMITIT_PREEMPT_SIGNAL`) and its handler
requeues at once, on rank 0, without a save; while the training loop runs it handles that signal itself
(`train/preempt.py`), saves a checkpoint on every rank and returns a summary marked `preempted`, and the
task then hands the signal back to submitit, whose handler calls `checkpoint` (the same task again),
requeues the job and exits. A run that stops because its time limit is near does the same. The requeued
task resumes from the newest complete checkpoint (OUT/checkpoints/latest).
"""

from __future__ import annotations

import os
import signal
from typing import Any


def submitit_signal() -> signal.Signals:
    """The signal submitit's jobs are warned with (`JobEnvironment.USR_SIG`)."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


class TrainTask:
    def __init__(self, stage: str, config_path: str | None, overrides: list[str]):
        self.stage = stage
        self.config_path = config_path
        self.overrides = list(overrides)

    def __call__(self) -> Any:
        import submitit

        from ..stages import run_stage

        env = submitit.JobEnvironment()
        os.environ.update(
            RANK=str(env.global_rank),
            WORLD_SIZE=str(env.num_tasks),
            LOCAL_RANK=str(env.local_rank),
            MASTER_ADDR=env.hostnames[0],
            MASTER_PORT=os.environ.get("MASTER_PORT") or str(20000 + int(env.job_id.split("_")[0]) % 20000),
        )
        summary = run_stage(self.stage, self.config_path, self.overrides)
        if isinstance(summary, dict) and summary.get("preempted"):
            # submitit's own handler (installed before this task ran) requeues; the others return.
            signal.raise_signal(submitit_signal())
        return summary

    def checkpoint(self, *args: Any, **kwargs: Any):
        import submitit

        return submitit.helpers.DelayedSubmission(TrainTask(self.stage, self.config_path, self.overrides))
