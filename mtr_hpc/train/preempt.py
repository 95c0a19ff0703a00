"""Preemption: SIGUSR1/SIGTERM ask a training loop to checkpoint at the next step boundary and exit.

Slurm sends the signal before a time limit (`--signal=USR1@120`) or on preemption; every rank sets its
flag, the ranks agree (one all-reduce per step), save a checkpoint together, and the process exits with
`PREEMPTED_EXIT_CODE` so the batch script knows to requeue. The all-reduce runs on the default group,
which is NCCL on GPUs: the flag tensor lives on the device that group's backend serves.
"""

from __future__ import annotations

import signal

import torch

PREEMPTED_EXIT_CODE = 42


class PreemptionFlag:
    def __init__(self, signals=(signal.SIGUSR1, signal.SIGTERM)):
        self.requested = False
        self._previous = {}
        for sig in signals:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside a test runner thread)
                continue

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def agreed(self) -> bool:
        """True on every rank when any rank was signalled."""
        import torch.distributed as dist

        from ..models.parallel import collective_device

        if not (dist.is_initialized() and dist.get_world_size() > 1):
            return self.requested
        flag = torch.tensor([1 if self.requested else 0], device=collective_device())
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
