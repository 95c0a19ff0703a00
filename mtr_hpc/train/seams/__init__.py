"""Device seams (design §2): the four places where the GPU and CPU training paths differ.

`wrap_model` (Megatron DDP vs plain module), `build_optimizer` (Megatron distributed optimizer vs
torch AdamW), `forward_backward` (Megatron's pipeline schedules vs a microbatch loop) and checkpoint
`save`/`load` (dist_checkpointing vs per-rank torch files). The training loops call only these; the
forward step and loss are shared (`mtr_hpc.train.step`).
"""

from __future__ import annotations

from .base import DeviceSeam, OptimConfig


def seam_device(device: str) -> str:
    """cpu | gpu for a configured `device` (cpu | gpu | auto: gpu when CUDA is available)."""
    import torch

    if device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return device


def get_seam(device: str, **kwargs) -> DeviceSeam:
    """`device` is cpu | gpu | auto (gpu when CUDA is available)."""
    device = seam_device(device)
    if device == "gpu":
        from .gpu import GpuSeam

        return GpuSeam(**kwargs)
    if device == "cpu":
        from .cpu import CpuSeam

        return CpuSeam(**kwargs)
    from ...errors import ConfigError

    raise ConfigError("device", f"'{device}' is not one of cpu, gpu, auto")


__all__ = ["DeviceSeam", "OptimConfig", "get_seam", "seam_device"]
