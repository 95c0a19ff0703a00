"""vLLM offline generation (`vllm.LLM.chat`) behind `LLMClient`: the scale backend on GPU nodes.

vLLM is optional and imported when the client is built; without it the constructor raises
`MissingDependencyError`. JSON Schema output is enforced while decoding through vLLM's structured
outputs: `SamplingParams(structured_outputs=StructuredOutputsParams(json=schema))` on vLLM >= 0.12,
`SamplingParams(guided_decoding=GuidedDecodingParams(json=schema))` on the releases before it.
All requests of one `chat_many` go to the engine in one call, which schedules them itself.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from ..errors import require
from .protocol import ChatRequest, ChatResponse, LLMError

_HINT = "install it on a CUDA machine with `pip install vllm` (the `gpu` extra of mtr-hpc)"


class VLLMClient:
    """`LLMClient` over an in-process `vllm.LLM`; extra keyword arguments go to `vllm.LLM(...)`."""

    supports_json_schema = True

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        name: str | None = None,
        **engine_kwargs: Any,
    ):
        self._vllm = require("vllm", "the vLLM offline LLM client", _HINT)
        from ..models.registry import resolve_model

        self.name = name or f"vllm:{model}"
        self.model_name = model
        kwargs: dict[str, Any] = dict(
            model=resolve_model(model),
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
        )
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        kwargs.update(engine_kwargs)
        self._llm = self._vllm.LLM(**kwargs)
        self._lock = threading.Lock()  # vllm.LLM is not re-entrant

    def sampling_params(self, req: ChatRequest):
        sp = self._vllm.SamplingParams
        kwargs: dict[str, Any] = dict(
            max_tokens=req.max_tokens,
            temperature=req.temperature,
            top_p=req.top_p,
            seed=req.seed,
            stop=req.stop,
        )
        if req.json_schema is not None:
            kwargs.update(_structured_kwargs(req.json_schema))
        return sp(**kwargs)

    async def chat(self, req: ChatRequest) -> ChatResponse:
        (result,) = await self.chat_many([req])
        if isinstance(result, LLMError):
            raise result
        return result

    async def chat_many(self, reqs: list[ChatRequest]) -> list[ChatResponse | LLMError]:
        return await asyncio.to_thread(self.generate, list(reqs))

    def generate(self, reqs: list[ChatRequest]) -> list[ChatResponse | LLMError]:
        t0 = time.perf_counter()
        with self._lock:
            outputs = self._llm.chat(
                [r.messages for r in reqs], [self.sampling_params(r) for r in reqs], use_tqdm=False
            )
        latency = time.perf_counter() - t0
        results: list[ChatResponse | LLMError] = []
        for out in outputs:
            if not out.outputs:
                results.append(
                    LLMError("bad_response", f"vLLM returned no completion for request {out.request_id}")
                )
                continue
            comp = out.outputs[0]
            n_prompt = len(out.prompt_token_ids or [])
            usage = {
                "prompt_tokens": n_prompt,
                "completion_tokens": len(comp.token_ids),
                "total_tokens": n_prompt + len(comp.token_ids),
            }
            results.append(ChatResponse(comp.text, comp.finish_reason or "stop", usage, latency, self.name))
        return results


def _structured_kwargs(schema: dict) -> dict[str, Any]:
    """The SamplingParams keyword that constrains output to `schema`, for the installed vLLM."""
    params = require("vllm.sampling_params", "vLLM structured outputs", _HINT)
    if hasattr(params, "StructuredOutputsParams"):
        return {"structured_outputs": params.StructuredOutputsParams(json=schema)}
    return {"guided_decoding": params.GuidedDecodingParams(json=schema)}
