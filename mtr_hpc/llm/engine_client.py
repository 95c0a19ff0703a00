"""`LLMClient` over a rollout engine: how the project serves chat requests from an in-process model.

The project wraps each inference library once, as a rollout engine (`rollout.hf_engine`,
`rollout.vllm_engine`); the chat clients that synthesis and the tool simulators use are this adapter
over those engines. A request is rendered with the tokenizer's chat template and generated as token
ids, with its own sampling settings; all requests of one `chat_many` go to the engine in one call,
which batches them itself. As in the OpenAI API, a stop string ends generation and is removed from the
text, and so is the end-of-sequence token.

JSON Schema output: an engine with structured outputs (`supports_json_schema`, vLLM) constrains its
decoding to the schema; any other is told the schema in the system prompt. Either way, with
`strict_json` an answer that is not a valid instance (one cut off by `max_tokens`, say) becomes
`LLMError(kind="bad_response", retryable=True)` in its place; without it the raw text is returned for
the caller to judge.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

from .json_output import check_schema_output, with_schema_instruction
from .protocol import ChatRequest, ChatResponse, LLMError


class EngineClient:
    """The adapter; a backend supplies `_build() -> (engine, tokenizer)`, called on first use."""

    supports_json_schema = False

    def __init__(self, model: str, *, name: str | None = None, strict_json: bool = True):
        self.model_name = model
        self.name = name or model
        self.strict_json = strict_json
        self.engine: Any = None
        self.tokenizer: Any = None
        # One generate at a time: neither engine is safe to share between threads mid-decode.
        self._lock = threading.Lock()

    def _build(self) -> tuple[Any, Any]:
        raise NotImplementedError

    def load(self) -> None:
        """Load tokenizer and weights now (otherwise the first request does)."""
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> None:
        if self.engine is None:
            self.engine, self.tokenizer = self._build()

    async def chat(self, req: ChatRequest) -> ChatResponse:
        (result,) = await asyncio.to_thread(self.generate, [req])
        if isinstance(result, LLMError):
            raise result
        return result

    async def chat_many(self, reqs: list[ChatRequest]) -> list[ChatResponse | LLMError]:
        return await asyncio.to_thread(self.generate, list(reqs))

    def generate(self, reqs: Sequence[ChatRequest]) -> list[ChatResponse | LLMError]:
        """Answers for `reqs`, in order; schema violations come back as `LLMError`s in place."""
        if not reqs:
            return []
        with self._lock:
            self._load_locked()
            t0 = time.perf_counter()
            prompts = [self._prompt_ids(r) for r in reqs]
            gens = self.engine.generate(prompts, [self._sampling(r) for r in reqs])
            latency = time.perf_counter() - t0
        return [self._finish(r, g, len(p), latency) for r, g, p in zip(reqs, gens, prompts, strict=True)]

    def _sampling(self, req: ChatRequest):
        from ..rollout.protocol import SamplingParams

        return SamplingParams(
            max_new_tokens=req.max_tokens,
            temperature=req.temperature,
            top_p=req.top_p if req.temperature > 0 else 1.0,
            seed=req.seed,
            stop_strings=list(req.stop or ()),
            json_schema=req.json_schema if self.supports_json_schema else None,
        )

    def _prompt_ids(self, req: ChatRequest) -> list[int]:
        messages = req.messages
        if req.json_schema is not None and not self.supports_json_schema:
            messages = with_schema_instruction(messages, req.json_schema)
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _finish(self, req: ChatRequest, gen, prompt_tokens: int, latency: float) -> ChatResponse | LLMError:
        ids, finish = list(gen.token_ids), gen.finish_reason
        if isinstance(gen.stop, int) and ids and ids[-1] == gen.stop:
            ids = ids[:-1]  # the end-of-sequence or stop token is not part of the answer, nor counted
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        cut = min((p for p in (text.find(s) for s in req.stop or ()) if p >= 0), default=-1)
        if cut >= 0:
            text, finish = text[:cut], "stop"
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(ids),
            "total_tokens": prompt_tokens + len(ids),
        }
        if req.json_schema is not None and self.strict_json:
            try:
                text = check_schema_output(text, req.json_schema)
            except LLMError as exc:
                return exc
        return ChatResponse(text, finish, usage, latency, self.name)
