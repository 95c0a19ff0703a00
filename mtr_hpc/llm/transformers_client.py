"""Local chat generation with Hugging Face transformers (CPU or GPU): the embedded default backend.

`EngineClient` over the embedded rollout engine (`rollout.hf_engine.HFRolloutEngine`), so the project
runs transformers through one decode loop: up to `max_batch` requests decode at once, with continuous
batching and per-request sampling. JSON Schema output is enforced while decoding: the engine masks the
tokens that would leave the schema (`rollout.json_constraint`); the answer is still validated, since
one cut off by `max_tokens` is not an instance. `num_threads` sets torch's intra-op threads for the
whole process when given.
"""

from __future__ import annotations

from typing import Any

from ..errors import MtrError
from .engine_client import EngineClient

# Accepted spellings of `dtype`: the engine's, and torch's.
_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


class TransformersClient(EngineClient):
    """`LLMClient` generating in-process; `generate` is the synchronous batch entry point."""

    supports_json_schema = True

    def __init__(
        self,
        model: str = "smollm2-135m",
        *,
        device: str = "cpu",
        dtype: str | None = None,
        max_batch: int = 8,
        strict_json: bool = True,
        num_threads: int | None = None,
        name: str | None = None,
    ):
        if max_batch < 1:
            raise MtrError(f"max_batch must be >= 1, got {max_batch}")
        super().__init__(model, name=name, strict_json=strict_json)
        self.device = device
        # The checkpoint's own precision unless told otherwise, as transformers loads a model.
        dtype = dtype or "auto"
        self.dtype = _DTYPES.get(dtype, dtype)
        self.max_batch = max_batch
        self.num_threads = num_threads

    def _build(self) -> tuple[Any, Any]:
        import torch

        from ..rollout.hf_engine import HFRolloutEngine

        if self.num_threads:
            # Process-wide. On CPUs shared with other jobs one thread is often several times faster than
            # two, because every op waits for its slowest, descheduled worker.
            torch.set_num_threads(self.num_threads)
        # No prefix cache: chat requests are independent, none extends an earlier one's sequence.
        engine = HFRolloutEngine(
            self.model_name,
            dtype=self.dtype,
            device=self.device,
            batch_size=self.max_batch,
            prefix_cache_gb=0,
        )
        return engine, engine.tokenizer
