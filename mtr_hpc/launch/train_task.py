"""The callable submitit runs for the training stages: one per Slurm task, checkpointable.

Each task maps submitit's view of the job (global rank, task count, first node) onto the
torch.distributed environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and runs the
stage in-process. On a time limit or preemption submitit calls `checkpoint`, which requeues the same
task; the stage then resumes from its newest complete checkpoint (OUT/checkpoints/latest).
"""

from __future__ import annotations

import os
from typing import Any


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
        return run_stage(self.stage, self.config_path, self.overrides)

    def checkpoint(self, *args: Any, **kwargs: Any):
        import submitit

        return submitit.helpers.DelayedSubmission(TrainTask(self.stage, self.config_path, self.overrides))
