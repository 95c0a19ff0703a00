"""Stopping a training run in time: on a signal, or before the Slurm job's time limit.

Two things ask a run to stop, save a checkpoint and exit so that the job is requeued and resumes:

- a signal. Slurm sends the batch scripts' `--signal=USR1@N` N seconds before the time limit and
  SIGTERM on preemption; submitit asks with SIGUSR2 (`SUBMITIT_PREEMPT_SIGNAL`, default `USR2`:
  `submitit/core/job_environment.py`, `JobEnvironment.USR_SIG`; `--signal=USR2@90` from
  `signal_delay_s=90` in `submitit/slurm/slurm.py` `_make_sbatch_string`). submitit's own USR2 handler
  (`SignalHandler.checkpoint_and_try_requeue`) requeues and exits on rank 0 at once, without a save, so
  the loop takes the three signals over while it runs and hands the signal back to submitit once the
  checkpoint is written (`launch/train_task.py`);
- the clock (`JobDeadline`). A step that takes longer than Slurm's warning (a 7B GRPO step, its
  checkpoint) would never see the signal in time, so the loop measures its steps and saves, and stops
  when the next step, a save and `train.time_limit_margin_s` would run past the job's end.

Every rank sets its own flag; the ranks agree with one all-reduce (MAX) per check, so they save together.
The all-reduce runs on the default group, which is NCCL on GPUs: the flag tensor lives on the device
that group's backend serves. A stopped run exits with `PREEMPTED_EXIT_CODE` so the batch script knows
to requeue.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import torch

PREEMPTED_EXIT_CODE = 42
SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)


class PreemptionFlag:
    def __init__(self, signals=SIGNALS):
        self.requested = False
        self.signum: int | None = None  # the first signal received
        self._previous = {}
        for sig in signals:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside a test runner thread)
                continue

    def _handle(self, signum, frame) -> None:
        self.requested = True
        if self.signum is None:
            self.signum = signum

    def agreed(self, also: bool = False) -> bool:
        """True on every rank when any rank was signalled (or passes `also`, e.g. its deadline)."""
        import torch.distributed as dist

        from ..models.parallel import collective_device

        mine = self.requested or also
        if not (dist.is_initialized() and dist.get_world_size() > 1):
            return mine
        flag = torch.tensor([1 if mine else 0], device=collective_device())
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class JobDeadline:
    """When this Slurm job must have saved and stopped, on the monotonic clock (None: no limit known).

    The time left comes from `SLURM_JOB_END_TIME` (Slurm >= 23.02 exports it) or, on older Slurm, from
    `squeue -h -j $SLURM_JOB_ID -o %L`, read once when the loop starts (a requeued job starts a new
    process, and reads its new limit)."""

    def __init__(self, seconds_left: float | None, margin_s: float):
        self.margin_s = margin_s
        self.end = None if seconds_left is None or margin_s <= 0 else time.monotonic() + seconds_left
        self.step_s = 0.0  # the longest step so far
        self.save_s = 0.0  # the longest save so far

    @classmethod
    def from_slurm(cls, margin_s: float) -> JobDeadline:
        return cls(slurm_seconds_left() if margin_s > 0 else None, margin_s)

    def near(self, ahead_s: float) -> bool:
        """True when `ahead_s` more seconds of work, a save and the margin would end past the job's end."""
        if self.end is None:
            return False
        return time.monotonic() + ahead_s + self.save_s + self.margin_s > self.end

    def seconds_left(self) -> float | None:
        return None if self.end is None else self.end - time.monotonic()


def slurm_seconds_left(environ=os.environ) -> float | None:
    """Seconds until this Slurm job's time limit; None outside a job, without a limit, or when Slurm
    cannot say (a warning names why)."""
    job = environ.get("SLURM_JOB_ID")
    if not job:
        return None
    end = environ.get("SLURM_JOB_END_TIME")
    if end and end.isdigit() and int(end) > 0:
        return int(end) - time.time()
    try:
        out = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%L"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"warning: the job's time left is unknown ({exc}); only signals stop the run", file=sys.stderr)
        return None
    return parse_time_left(out)


_TIME_LEFT = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$")


def parse_time_left(text: str) -> float | None:
    """squeue's `%L`: `[days-][hours:]minutes:seconds`; UNLIMITED, NOT_SET, INVALID: None."""
    m = _TIME_LEFT.match(text.strip())
    if not m:
        return None
    days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)
