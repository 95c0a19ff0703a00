"""vLLM offline generation behind `LLMClient`: the scale backend on GPU nodes.

`EngineClient` over the vLLM rollout engine (`rollout.vllm_engine.VLLMRolloutEngine`), so vLLM is
wrapped once in the project. The engine is built with sleep mode off: a synthesis client keeps its
memory. JSON Schema output is enforced while decoding through vLLM's structured outputs, which the
engine passes in its `SamplingParams`. The chat template is the model's, applied by its Hugging Face
tokenizer, as `vllm.LLM.chat` does for a Hugging Face model. vLLM is optional and imported when the
client is built; without it the constructor raises `MissingDependencyError`.
"""

from __future__ import annotations

from typing import Any

from ..errors import require
from .engine_client import EngineClient

_HINT = "install it on a CUDA machine with `pip install vllm` (the `gpu` extra of mtr-hpc)"


class VLLMClient(EngineClient):
    """`LLMClient` over an in-process vLLM engine; extra keyword arguments go to `vllm.LLM(...)`."""

    supports_json_schema = True

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        strict_json: bool = True,
        name: str | None = None,
        **engine_kwargs: Any,
    ):
        require("vllm", "the vLLM offline LLM client", _HINT)
        super().__init__(model, name=name or f"vllm:{model}", strict_json=strict_json)
        self._engine_kwargs = dict(
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            enable_sleep_mode=False,
            **engine_kwargs,
        )
        self.load()  # a GPU engine is built up front, so a bad setting fails before any work is queued

    def _build(self) -> tuple[Any, Any]:
        from transformers import AutoTokenizer

        from ..models.registry import resolve_model
        from ..rollout.vllm_engine import VLLMRolloutEngine

        engine = VLLMRolloutEngine(self.model_name, **self._engine_kwargs)
        return engine, AutoTokenizer.from_pretrained(resolve_model(self.model_name))
