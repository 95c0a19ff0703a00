"""The scale rollout engine: an in-process `vllm.LLM`, colocated with the trainer on the same GPUs.

vLLM is optional and imported when the engine is built (`MissingDependencyError` without it); nothing
here runs on the CPU path. The engine is deliberately thin, using only vLLM's documented offline API:

- generation: `LLM.generate([TokensPrompt(prompt_token_ids=...)], [SamplingParams(..., logprobs=0)])`
  gives back the sampled ids and each sampled token's logprob (`logprobs=0`: the sampled token only);
- weight sync: `LLM.apply_model(fn)` runs `fn(model)` on the model inside each worker, and `fn` calls
  the model's own `load_weights(weights=[(hf_name, tensor), ...])`, which takes Hugging Face names and
  fuses q/k/v and gate/up itself. Tensors go in buckets of about `bucket_bytes`, so a 7B push never
  needs a second copy of the whole model. The engine core is kept in this process
  (`VLLM_ENABLE_V1_MULTIPROCESSING=0`), so the function and the tensors are handed over without
  serialization; stale prefix-cache entries are dropped after each push;
- memory: `LLM.sleep(level=1)` offloads weights and drops the KV cache while the trainer steps,
  `LLM.wake_up()` brings them back (needs `enable_sleep_mode=True`).

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

from ..errors import MtrError, require
from .protocol import Generation, SamplingParams, check_prompts, per_request_params

if TYPE_CHECKING:
    import torch

_HINT = "install it on a CUDA machine with `pip install vllm` (the `gpu` extra of mtr-hpc)"
_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class VLLMRolloutEngine:
    """`RolloutEngine` over `vllm.LLM`; extra keyword arguments go to `vllm.LLM(...)`."""

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "bf16",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.5,
        max_model_len: int | None = None,
        enable_sleep_mode: bool = True,
        seed: int = 0,
        bucket_bytes: int = 512 << 20,
        **engine_kwargs: Any,
    ):
        self._vllm = require("vllm", "the vLLM rollout engine", _HINT)
        from ..models.registry import resolve_model

        # Weight pushes call into the worker's model directly; that needs the engine core in-process.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        kwargs: dict[str, Any] = dict(
            model=resolve_model(model),
            dtype=_DTYPES.get(dtype, dtype),
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_sleep_mode=enable_sleep_mode,
            seed=seed,
        )
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if _engine_accepts(self._vllm, "logprobs_mode"):
            kwargs["logprobs_mode"] = "processed_logprobs"
        kwargs.update(engine_kwargs)
        self._llm = self._vllm.LLM(**kwargs)
        self.enable_sleep_mode = enable_sleep_mode
        self.bucket_bytes = bucket_bytes
        self.vocab_size = int(self._llm.llm_engine.model_config.get_vocab_size())

    def generate(
        self, prompts: list[list[int]], params: SamplingParams | list[SamplingParams]
    ) -> list[Generation]:
        check_prompts(prompts, self.vocab_size)
        plist = per_request_params(params, len(prompts))
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
        )

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> dict:
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
            raise MtrError(f"update_weights: vLLM rejected the bucket [{names}]: {exc!r}") from exc

    def sleep(self) -> None:
        if self.enable_sleep_mode:
            self._llm.sleep(level=1)

    def wake(self) -> None:
        if self.enable_sleep_mode:
            self._llm.wake_up()

    def logits(self, token_ids: list[int]) -> torch.Tensor:
        raise MtrError(
            "VLLMRolloutEngine cannot return full logits (vLLM does not expose them); "
            "compare generation logprobs, or use HFRolloutEngine for logit-level checks"
        )


def _generation(request_output) -> Generation:
    if not request_output.outputs:
        raise MtrError(f"vLLM returned no completion for request {request_output.request_id}")
    comp = request_output.outputs[0]
    ids = list(comp.token_ids)
    if comp.finish_reason not in ("stop", "length"):
        raise MtrError(f"vLLM request {request_output.request_id} ended with {comp.finish_reason!r}")
    logprobs = [float(entry[tid].logprob) for tid, entry in zip(ids, comp.logprobs or [], strict=True)]
    stop = comp.stop_reason if comp.finish_reason == "stop" else None
    if comp.finish_reason == "stop" and stop is None and ids:
        stop = ids[-1]  # vLLM reports the end-of-sequence token as no reason; name it like HF does
    return Generation(ids, logprobs, comp.finish_reason, stop)


def _engine_accepts(vllm, field: str) -> bool:
    engine_args = getattr(vllm, "EngineArgs", None)
    if engine_args is None or not dataclasses.is_dataclass(engine_args):
        return False
    return field in {f.name for f in dataclasses.fields(engine_args)}
