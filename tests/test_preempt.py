"""Preemption: the ranks agree on a signal through a collective on the device the backend serves."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from _dist import run_distributed

# Multi-second tests (real clusters, several ranks or real models): out of `-m "not slow"`.
pytestmark = pytest.mark.slow


def _agree(rank, world):
    from mtr_hpc.train.preempt import PreemptionFlag

    flag = PreemptionFlag()
    try:
        first = flag.agreed()
        if rank == 1:
            os.kill(os.getpid(), signal.SIGUSR1)
        return first, flag.agreed()
    finally:
        flag.restore()


def test_one_signalled_rank_stops_every_rank():
    assert run_distributed(_agree, 2, timeout=60) == [(False, True), (False, True)]


def test_collectives_on_nccl_use_the_current_cuda_device(monkeypatch):
    import torch.distributed as dist

    from mtr_hpc.models import parallel

    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert parallel.collective_device() == torch.device("cuda", 3)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "gloo")
    assert parallel.collective_device() == torch.device("cpu")
