"""The scale rollout engine: an in-process `vllm.LLM`, colocated with the trainer on the same GPUs.

vLLM is optional and imported when the engine is built (`MissingDependencyError` without it); nothing
here runs on the CPU path. The engine uses vLLM's offline API (checked against vLLM's source,
`vllm/entrypoints/llm.py`, `vllm/v1/worker/gpu_worker.py`, `vllm/device_allocator/cumem.py`,
`vllm/distributed/parallel_state.py`, `vllm/config/parallel.py`):

- generation: `LLM.generate([TokensPrompt(prompt_token_ids=...)], [SamplingParams(..., logprobs=0)])`
  gives back the sampled ids and each sampled token's logprob (`logprobs=0`: the sampled token only);
  a request's `json_schema` becomes vLLM's structured outputs (`_structured_kwargs`);
- weight sync: `LLM.apply_model(fn)` runs `fn(model)` on the model inside the worker, and `fn` calls the
  model's own `load_weights(weights=[(hf_name, tensor), ...])`, which takes Hugging Face names and fuses
  q/k/v and gate/up itself. Tensors go in buckets of about `bucket_bytes`, so a 7B push never needs a
  second copy of the whole model. The engine core runs in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`),
  so the function and the tensors are handed over without serialization; the prefix cache is reset
  after each push (its blocks were computed with the old weights);
- memory (`ManagedEngine`'s order): `sleep(level)` unmaps the weights and the KV cache (level 1 keeps a
  host copy of the weights, level 2 discards them); a push first wakes the weights
  (`wake_up(tags=["weights"])`, which restores the host copy), then loads; generation wakes the KV cache
  (`wake_up(tags=["kv_cache"])`). Weights must be awake before the KV cache: `Worker.wake_up` restores
  level-2 buffers on the first wake, whatever its tags. In vLLM 0.10.2 `Executor.sleep`
  (`vllm/executor/executor_base.py`) returns at once while the executor `is_sleeping`, which stays true
  until every tag was woken, so a sleep after a push alone wakes the KV cache first
  (`sleeps_only_fully_awake`; later releases, e.g. 0.34's `vllm/v1/executor/abstract.py`, refuse only
  while the weights sleep, and the extra wake costs a map and an unmap). Each wake first gives PyTorch's
  cached blocks back to the driver: 0.10.2's `CuMemAllocator.wake_up` (`vllm/device_allocator/cumem.py`)
  maps fresh physical memory (`create_and_map`, `cuMemCreate`) without releasing anything, while the
  trainer's freed activations, logits and gradients are still held by PyTorch's caching allocator (0.34
  empties the cache itself). vLLM 0.10.2's allocator refuses `PYTORCH_CUDA_ALLOC_CONF=expandable_segments`;
- ranks: inside a torch.distributed world (every GRPO run) the engine is built with vLLM's
  `external_launcher` executor on EVERY rank: vLLM reuses the trainer's default process group and creates
  its own groups over the whole world (`initialize_model_parallel`: `arange(world).reshape(-1, dp, pp,
  tp)`), which only completes when all ranks take part. With `tensor_parallel_size=1` each rank holds an
  independent engine: every vLLM group has one rank, and nothing after construction uses the world group
  (the data-parallel sync is skipped at size 1, `gpu_model_runner.py`), so the ranks generate different
  prompts for different numbers of steps (read in 0.10.2 and 0.34). Construction is collective
  (`determine_available_memory` takes the minimum over the world), so every rank builds at the same point.

Logprobs follow the protocol (temperature-scaled, before truncation) through
`logprobs_mode="processed_logprobs"` (vLLM >= 0.10.2; older releases return raw temperature-1
logprobs). Departure: vLLM takes its processed logprobs AFTER top-k / top-p masking, so with
`top_k > 0` or `top_p < 1` they are those of the truncated distribution; GRPO's defaults (`top_p=1`,
`top_k=0`) are unaffected. `logits()` is not available (vLLM does not expose full logits); weight-sync
checks compare generation logprobs instead.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, RunFailure, require
from .lifecycle import ManagedEngine
from .protocol import Generation, SamplingParams

if TYPE_CHECKING:
    import torch

_HINT = "install it on a CUDA machine with `pip install vllm` (the `gpu` extra of mtr-hpc)"
_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class VLLMRolloutEngine(ManagedEngine):
    """`RolloutEngine` over `vllm.LLM`; extra keyword arguments go to `vllm.LLM(...)`.

    `sleep_level` 1 keeps a host copy of the weights while asleep (pinned memory of the model's size);
    2 discards them, which is cheaper when every wake is followed by a full weight push, as in GRPO.
    """

    supports_json_schema = True  # through vLLM's structured outputs
    sleeps_only_fully_awake = True  # vLLM 0.10.2's `Executor.sleep` is a no-op while any tag is asleep

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "bf16",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.5,
        max_model_len: int | None = None,
        enable_sleep_mode: bool = True,
        sleep_level: int = 1,
        seed: int = 0,
        bucket_bytes: int = 512 << 20,
        **engine_kwargs: Any,
    ):
        if sleep_level not in (1, 2):
            raise ConfigError("rollout.sleep_level", f"must be 1 or 2, got {sleep_level}")
        self._vllm = require("vllm", "the vLLM rollout engine", _HINT)
        from ..models.registry import resolve_model

        super().__init__()
        # Weight pushes call into the worker's model directly; that needs the engine core in-process.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        kwargs: dict[str, Any] = dict(
            model=resolve_model(model),
            dtype=_DTYPES.get(dtype, dtype),
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_sleep_mode=enable_sleep_mode,
            seed=seed,
        )
        if _join_torch_world():
            kwargs["distributed_executor_backend"] = "external_launcher"
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if _engine_accepts(self._vllm, "logprobs_mode"):
            kwargs["logprobs_mode"] = "processed_logprobs"
        kwargs.update(engine_kwargs)
        self._llm = self._vllm.LLM(**kwargs)
        self.enable_sleep_mode = enable_sleep_mode
        self.sleep_level = sleep_level
        self.sleep_discards_weights = sleep_level == 2
        self.bucket_bytes = bucket_bytes
        self.vocab_size = int(self._llm.llm_engine.model_config.get_vocab_size())

    def _generate(self, prompts: list[list[int]], plist: list[SamplingParams]) -> list[Generation]:
        inputs = require("vllm.inputs", "the vLLM rollout engine", _HINT)
        requests = [inputs.TokensPrompt(prompt_token_ids=list(p)) for p in prompts]
        outputs = self._llm.generate(requests, [self._sampling(p) for p in plist], use_tqdm=False)
        return [_generation(out) for out in outputs]

    def _sampling(self, p: SamplingParams):
        return self._vllm.SamplingParams(
            n=1,
            max_tokens=p.max_new_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            top_k=p.top_k if p.top_k > 0 else -1,  # -1 disables top-k in every vLLM release
            seed=p.seed,
            stop=list(p.stop_strings) or None,
            stop_token_ids=list(p.stop_token_ids) or None,
            include_stop_str_in_output=True,
            skip_special_tokens=False,
            logprobs=0,
            **(_structured_kwargs(p.json_schema) if p.json_schema is not None else {}),
        )

    def _load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> dict:
        """Push `(HF name, tensor)` pairs into the engine's model in buckets of about `bucket_bytes`."""
        t0 = time.perf_counter()
        nbytes = count = size = 0
        bucket: list[tuple[str, Any]] = []
        for name, tensor in named_tensors:
            bucket.append((name, tensor.detach()))
            size += tensor.numel() * tensor.element_size()
            if size >= self.bucket_bytes:
                self._load_bucket(bucket)
                nbytes, count, size, bucket = nbytes + size, count + len(bucket), 0, []
        if bucket:
            self._load_bucket(bucket)
            nbytes, count = nbytes + size, count + len(bucket)
        self._llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights
        return {"bytes": nbytes, "seconds": time.perf_counter() - t0, "tensors": count}

    def _load_bucket(self, bucket: list[tuple[str, Any]]) -> None:
        try:
            self._llm.apply_model(lambda model: model.load_weights(weights=bucket))
        except (KeyError, AssertionError, RuntimeError, ValueError) as exc:
            names = ", ".join(n for n, _ in bucket[:4]) + (" ..." if len(bucket) > 4 else "")
            raise RunFailure(f"update_weights: vLLM rejected the bucket [{names}]: {exc!r}") from exc

    def sleep(self) -> None:
        if self.enable_sleep_mode:
            super().sleep()

    def _sleep(self) -> None:
        self._llm.sleep(level=self.sleep_level)

    def _wake_weights(self) -> None:
        _release_cached_blocks()
        self._llm.wake_up(tags=["weights"])

    def _wake_cache(self) -> None:
        _release_cached_blocks()
        self._llm.wake_up(tags=["kv_cache"])


def _release_cached_blocks() -> None:
    """Hand the blocks PyTorch's allocator keeps cached (the trainer's freed tensors) back to the
    driver, so vLLM's wake can map its memory; a no-op before CUDA is initialized."""
    import torch

    torch.cuda.empty_cache()


def _join_torch_world() -> bool:
    """True inside an initialized torch.distributed world; then the environment that vLLM's external
    launcher reads (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`) is filled in where
    the launcher left it out (a one-process world started without torchrun)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return False
    os.environ.setdefault("RANK", str(dist.get_rank()))
    os.environ.setdefault("WORLD_SIZE", str(dist.get_world_size()))
    os.environ.setdefault("LOCAL_RANK", str(torch.cuda.current_device() if torch.cuda.is_available() else 0))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        from ..models.parallel import free_port

        os.environ["MASTER_PORT"] = str(free_port())
    return True


def _generation(request_output) -> Generation:
    if not request_output.outputs:
        raise RunFailure(f"vLLM returned no completion for request {request_output.request_id}")
    comp = request_output.outputs[0]
    ids = list(comp.token_ids)
    if comp.finish_reason not in ("stop", "length"):
        raise RunFailure(f"vLLM request {request_output.request_id} ended with {comp.finish_reason!r}")
    logprobs = [float(entry[tid].logprob) for tid, entry in zip(ids, comp.logprobs or [], strict=True)]
    stop = comp.stop_reason if comp.finish_reason == "stop" else None
    if comp.finish_reason == "stop" and stop is None and ids:
        stop = ids[-1]  # vLLM reports the end-of-sequence token as no reason; name it like HF does
    return Generation(ids, logprobs, comp.finish_reason, stop)


def _structured_kwargs(schema: dict) -> dict[str, Any]:
    """The `SamplingParams` keyword that constrains output to `schema`, for the installed vLLM:
    `structured_outputs=StructuredOutputsParams(json=...)` from 0.12 on, `guided_decoding=
    GuidedDecodingParams(json=...)` before (both in `vllm/sampling_params.py`)."""
    params = require("vllm.sampling_params", "vLLM structured outputs", _HINT)
    if hasattr(params, "StructuredOutputsParams"):
        return {"structured_outputs": params.StructuredOutputsParams(json=schema)}
    return {"guided_decoding": params.GuidedDecodingParams(json=schema)}


def _engine_accepts(vllm, field: str) -> bool:
    engine_args = getattr(vllm, "EngineArgs", None)
    if engine_args is None or not dataclasses.is_dataclass(engine_args):
        return False
    return field in {f.name for f in dataclasses.fields(engine_args)}
