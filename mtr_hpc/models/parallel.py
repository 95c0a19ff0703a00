"""torch.distributed + Megatron model-parallel state, on GPU (NCCL) and on CPU (gloo).

Megatron-Core needs `parallel_state.initialize_model_parallel` even for TP=PP=1, and its RNG tracker
(`model_parallel_cuda_manual_seed`) reads and writes CUDA generator states. On CPU the tracker is swapped
for one that forks the CPU generator instead, so dropout regions and activation recomputation that fork
the "model-parallel-rng" state work the same way without CUDA.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from megatron.core.tensor_parallel.random import CudaRNGStatesTracker

from ..errors import MtrError


@dataclass(frozen=True)
class ParallelInfo:
    tp: int
    pp: int
    rank: int
    world_size: int
    backend: str
    tp_rank: int


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def collective_device(group=None) -> torch.device:
    """Where a tensor must live for a collective on `group` (default: the world): NCCL serves only
    CUDA tensors ("No backend type associated with device type cpu" otherwise), gloo CPU ones."""
    backend = str(dist.get_backend(group))
    if "nccl" in backend and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _init_process_group(backend: str, timeout_min: float | None) -> None:
    if dist.is_initialized():
        return
    if backend == "nccl" and "LOCAL_RANK" in os.environ:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    kwargs = {"timeout": timedelta(minutes=timeout_min)} if timeout_min else {}
    if all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")):
        dist.init_process_group(backend=backend, **kwargs)
        return
    # Not launched by torchrun: a one-process world over a private TCP store.
    dist.init_process_group(
        backend=backend, init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1, **kwargs
    )


def init_parallel(
    tp: int = 1, pp: int = 1, backend: str | None = None, seed: int = 1234, timeout_min: float | None = None
) -> ParallelInfo:
    """Initialize torch.distributed (if needed) and Megatron's model-parallel groups, then seed RNGs.

    `timeout_min` bounds how long a collective may wait (torch's default is 10 minutes for NCCL: a GRPO
    rank waiting for rank 0's rollouts needs longer). Calling it again with the same sizes is a no-op;
    with other sizes the Megatron groups are rebuilt.
    """
    from megatron.core import parallel_state as ps

    backend = backend or default_backend()
    _init_process_group(backend, timeout_min)
    world = dist.get_world_size()
    if world % (tp * pp):
        raise MtrError(f"world size {world} is not divisible by tp*pp = {tp}*{pp}")
    if ps.model_parallel_is_initialized():
        same = (
            ps.get_tensor_model_parallel_world_size() == tp
            and ps.get_pipeline_model_parallel_world_size() == pp
        )
        if not same:
            ps.destroy_model_parallel()
    if not ps.model_parallel_is_initialized():
        ps.initialize_model_parallel(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp)
    model_parallel_seed(seed)
    return ParallelInfo(
        tp=tp,
        pp=pp,
        rank=dist.get_rank(),
        world_size=world,
        backend=dist.get_backend(),
        tp_rank=ps.get_tensor_model_parallel_rank(),
    )


def from_last_stage(obj):
    """`obj` as the last pipeline stage of this rank's pipeline has it, on every stage (picklable)."""
    from megatron.core import parallel_state as ps

    if ps.get_pipeline_model_parallel_world_size() == 1:
        return obj
    group = ps.get_pipeline_model_parallel_group()
    box = [obj]
    src = dist.get_global_rank(group, dist.get_world_size(group) - 1)
    dist.broadcast_object_list(box, src=src, group=group, device=collective_device(group))
    return box[0]


def destroy_parallel() -> None:
    """Tear down Megatron groups and the process group (tests run many worlds in one interpreter)."""
    from megatron.core import parallel_state as ps

    ps.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()


def tp_group():
    from megatron.core import parallel_state as ps

    return ps.get_tensor_model_parallel_group()


def model_parallel_seed(seed: int) -> None:
    """`model_parallel_cuda_manual_seed` on GPU; its CPU equivalent otherwise."""
    from megatron.core import tensor_parallel

    if torch.cuda.is_available():
        tensor_parallel.model_parallel_cuda_manual_seed(seed)
        return
    from megatron.core import parallel_state as ps

    tp_rank = ps.get_tensor_model_parallel_rank()
    torch.manual_seed(seed)
    tracker = tensor_parallel.get_cuda_rng_tracker()
    tracker.__class__ = CpuRNGStatesTracker
    tracker.reset()
    # Same offsets as Megatron: data-parallel state = seed, TP state = seed + 2718 + tp_rank.
    tracker.add("data-parallel-rng", seed)
    tracker.add("model-parallel-rng", seed + 2718 + tp_rank)
    tracker.add("expert-parallel-rng", seed + 1024)


class CpuRNGStatesTracker(CudaRNGStatesTracker):
    """Megatron's RNG tracker with named states of the CPU generator instead of the CUDA one."""

    def add(self, name, seed):
        if seed in self.seeds_ or name in self.states_:
            raise MtrError(f"RNG state '{name}' (seed {seed}) already exists")
        self._is_initialized = True
        self.seeds_.add(seed)
        self.states_[name] = torch.Generator().manual_seed(seed).get_state()

    @contextlib.contextmanager
    def fork(self, name="model-parallel-rng"):
        if name not in self.states_:
            raise MtrError(f"RNG state '{name}' was not added")
        saved = torch.get_rng_state()
        torch.set_rng_state(self.states_[name])
        try:
            yield
        finally:
            self.states_[name] = torch.get_rng_state()
            torch.set_rng_state(saved)
