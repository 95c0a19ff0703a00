"""Which floating-point precision a stage computes in: `dtype: auto` follows the machine it runs on.

- **GPU:** bf16 where the device supports it (Megatron's bf16: bf16 weights, fp32 main parameters in the
  optimizer), fp32 otherwise.
- **CPU:** bf16 where the CPU multiplies bf16 natively (x86 `avx512_bf16` or AMX `amx_bf16`: bf16 matrix
  products run about 2.2x fp32 there), fp32 elsewhere (without them torch emulates bf16, about 7x slower
  than fp32). Only x86 flags are read; any other CPU gets fp32.

What bf16 means on a CPU differs by use: *training* runs under `torch.autocast(bfloat16)` over fp32
weights, so gradients, the optimizer state and checkpoints stay fp32 (the master weights of mixed
precision; see `train.seams.cpu`); *inference* (the rollout engine, evaluation) holds bf16 weights.
`fp32` stays exact and is always available: naming a dtype overrides the choice. The choice and its reason
go in each stage's manifest (`Precision.to_dict`) and on stderr.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import ConfigError

DTYPE_NAMES = ("fp32", "bf16", "fp16")
CHOICES = ("auto", *DTYPE_NAMES)
# x86 flags (/proc/cpuinfo) under which the CPU computes bf16 products natively.
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Precision:
    """`dtype` is what computes (fp32 | bf16 | fp16); `requested` is as configured (`auto` or a name)."""

    requested: str
    dtype: str
    device: str  # cpu | cuda
    reason: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def describe(self) -> str:
        return f"precision {self.dtype} on {self.device} ({self.requested}: {self.reason})"


def check_choice(key: str, value: str) -> None:
    if value not in CHOICES:
        raise ConfigError(key, f"'{value}' is not one of {', '.join(CHOICES)}")


@functools.cache
def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The first CPU's flags (empty where /proc/cpuinfo is absent or names none, as on macOS or Arm)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return frozenset()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return frozenset(line.split(":", 1)[-1].split())


def cpu_bf16_flags(flags: Iterable[str] | None = None) -> list[str]:
    """Which of the native-bf16 flags this CPU (or `flags`) has."""
    have = cpu_flags() if flags is None else set(flags)
    return [f for f in CPU_BF16_FLAGS if f in have]


def resolve_dtype(
    requested: str,
    device: str,
    *,
    flags: Iterable[str] | None = None,
    cuda_bf16: bool | None = None,
    key: str = "dtype",
) -> Precision:
    """The precision for `requested` (auto | fp32 | bf16 | fp16) on `device` (cpu | cuda | gpu | auto).

    `flags` (the CPU's, read from /proc/cpuinfo when None) and `cuda_bf16` (asked of torch when None)
    are seams for tests.
    """
    check_choice(key, requested)
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = "cuda" if device in ("gpu", "cuda") or device.startswith("cuda:") else "cpu"
    if device == "cuda":
        if cuda_bf16 is None:
            import torch

            cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        if requested != "auto":
            return Precision(requested, requested, device, "configured")
        if cuda_bf16:
            return Precision(requested, "bf16", device, "the GPU computes bf16 natively")
        return Precision(requested, "fp32", device, "the GPU has no bf16")
    native = cpu_bf16_flags(flags)
    if requested == "auto":
        if native:
            return Precision(requested, "bf16", device, f"the CPU has {' and '.join(native)}")
        return Precision(
            requested,
            "fp32",
            device,
            "the CPU has neither avx512_bf16 nor amx_bf16: bf16 would be emulated, several times slower",
        )
    if requested == "bf16" and not native:
        return Precision(
            requested,
            "bf16",
            device,
            "configured; this CPU has neither avx512_bf16 nor amx_bf16, so bf16 is emulated and runs "
            "several times slower than fp32 (dtype: auto picks fp32 here)",
        )
    return Precision(requested, requested, device, "configured")


def torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def dtype_name(dtype, default: str = "fp32") -> str:
    """The name (`DTYPE_NAMES`) of a torch floating dtype; `default` for any other."""
    return {torch_dtype(n): n for n in DTYPE_NAMES}.get(dtype, default)
