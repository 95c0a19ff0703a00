"""Run a function in N gloo processes with a deadline, so a hung collective fails the test instead of
blocking the run.

`run_distributed(fn, world_size, *args, timeout=60)` spawns `world_size` processes (torch
multiprocessing, spawn start method), each with RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set to a free
port and the gloo process group initialized; `fn(rank, world_size, *args)` runs in each. Return values
(picklable) come back as a list in rank order. An exception in a worker, a non-zero exit or the deadline
passing kills every worker and raises `DistributedFailure` with the worker's traceback.
"""

from __future__ import annotations

import os
import queue
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch.multiprocessing as mp

from mtr_hpc.models.parallel import free_port


class DistributedFailure(AssertionError):
    pass


def _worker(rank: int, world_size: int, port: int, fn: Callable, args: tuple, results) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    try:
        import torch
        import torch.distributed as dist

        torch.set_num_threads(1)
        dist.init_process_group("gloo", rank=rank, world_size=world_size)
        try:
            results.put((rank, True, fn(rank, world_size, *args)))
        finally:
            dist.destroy_process_group()
    except BaseException:
        results.put((rank, False, traceback.format_exc()))


def run_distributed(fn: Callable, world_size: int, *args: Any, timeout: float = 60.0) -> list[Any]:
    """`fn(rank, world_size, *args)` in `world_size` gloo processes; their results in rank order."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(target=_worker, args=(r, world_size, port, fn, args, results), daemon=True)
        for r in range(world_size)
    ]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    out: dict[int, Any] = {}
    try:
        while len(out) < world_size:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DistributedFailure(
                    f"distributed run timed out after {timeout:.0f}s ({len(out)}/{world_size} done)"
                )
            try:
                rank, ok, value = results.get(timeout=min(left, 1.0))
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise DistributedFailure(f"worker exited with code {dead[0].exitcode}") from None
                continue
            if not ok:
                raise DistributedFailure(f"rank {rank} failed:\n{value}")
            out[rank] = value
        for p in procs:
            p.join(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
    return [out[r] for r in range(world_size)]
