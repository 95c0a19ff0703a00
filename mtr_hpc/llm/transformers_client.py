"""Local chat generation with Hugging Face transformers (CPU or GPU): the embedded default backend.

An adapter over the embedded rollout engine (`rollout.hf_engine.HFRolloutEngine`), so the project
runs transformers through one decode loop. Requests are rendered with the tokenizer's chat template,
and the engine generates them together: up to `max_batch` decode at once, with continuous batching.
Each request keeps its own sampling settings (temperature, top_p, seed, stop strings, max_tokens).
As in the OpenAI API, a stop string ends generation and is removed from the text, and so is the
end-of-sequence token. `num_threads` sets torch's intra-op threads for the whole process when given.

JSON Schema output is not enforced while decoding (`supports_json_schema = False`): the schema is put
in the system prompt and the answer is parsed and validated afterwards. With `strict_json` an answer
that is not a valid instance becomes `LLMError(kind="bad_response", retryable=True)`; without it the
raw text is returned for the caller to judge.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence
from typing import Any

from ..errors import MtrError
from .protocol import ChatRequest, ChatResponse, LLMError

SCHEMA_INSTRUCTION = (
    "Reply with a single JSON value and nothing else. It must be valid for this JSON Schema:\n{schema}"
)


def with_schema_instruction(messages: list[dict], schema: dict) -> list[dict]:
    """`messages` with the schema instruction appended to the system message (added if absent)."""
    note = SCHEMA_INSTRUCTION.format(schema=json.dumps(schema, ensure_ascii=False))
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system" and isinstance(out[0].get("content"), str):
        out[0]["content"] = f"{out[0]['content']}\n\n{note}"
    else:
        out.insert(0, {"role": "system", "content": note})
    return out


def extract_json(text: str) -> Any:
    """The first JSON value in `text` (code fences and surrounding prose tolerated); ValueError if none."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`")
        stripped = stripped[stripped.find("\n") + 1 :] if "\n" in stripped else stripped
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    decoder = json.JSONDecoder()
    for i, ch in enumerate(stripped):
        if ch in "{[":
            try:
                return decoder.raw_decode(stripped, i)[0]
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON value in the model output")


def check_schema_output(text: str, schema: dict) -> str:
    """Canonical JSON text of the instance in `text`, or `LLMError(bad_response)` naming the violation."""
    import jsonschema

    try:
        value = extract_json(text)
    except ValueError as exc:
        raise LLMError("bad_response", f"{exc}: {text[:120]!r}", retryable=True) from None
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        path = "/".join(str(p) for p in exc.absolute_path) or "<root>"
        raise LLMError(
            "bad_response", f"output violates the schema at {path}: {exc.message}", retryable=True
        ) from None
    except jsonschema.SchemaError as exc:
        raise LLMError(
            "bad_response", f"the requested json_schema is itself invalid: {exc.message}"
        ) from None
    return json.dumps(value, ensure_ascii=False)


# Accepted spellings of `dtype`: the engine's, and torch's.
_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


class TransformersClient:
    """`LLMClient` generating in-process; `generate` is the synchronous batch entry point."""

    supports_json_schema = False

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
        self.model_name = model
        self.name = name or model
        self.device = device
        # The checkpoint's own precision unless told otherwise, as transformers loads a model.
        dtype = dtype or "auto"
        self.dtype = _DTYPES.get(dtype, dtype)
        self.max_batch = max_batch
        self.strict_json = strict_json
        self.num_threads = num_threads
        self.engine = None
        # One generate at a time: the engine is not safe to share between threads mid-decode.
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load tokenizer and weights now (otherwise the first request does)."""
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> None:
        if self.engine is not None:
            return
        import torch

        from ..rollout.hf_engine import HFRolloutEngine

        if self.num_threads:
            # Process-wide. On CPUs shared with other jobs one thread is often several times faster than
            # two, because every op waits for its slowest, descheduled worker.
            torch.set_num_threads(self.num_threads)
        # No prefix cache: chat requests are independent, none extends an earlier one's sequence.
        self.engine = HFRolloutEngine(
            self.model_name,
            dtype=self.dtype,
            device=self.device,
            batch_size=self.max_batch,
            prefix_cache_gb=0,
        )

    async def chat(self, req: ChatRequest) -> ChatResponse:
        (result,) = await asyncio.to_thread(self.generate, [req])
        if isinstance(result, LLMError):
            raise result
        return result

    async def chat_many(self, reqs: list[ChatRequest]) -> list[ChatResponse | LLMError]:
        return await asyncio.to_thread(self.generate, list(reqs))

    def generate(self, reqs: Sequence[ChatRequest]) -> list[ChatResponse | LLMError]:
        """Answers for `reqs`, in order; schema violations come back as `LLMError`s in place."""
        from ..rollout.protocol import SamplingParams

        if not reqs:
            return []
        with self._lock:
            self._load_locked()
            tok = self.engine.tokenizer
            t0 = time.perf_counter()
            prompts = [self._prompt_ids(tok, r) for r in reqs]
            params = [
                SamplingParams(
                    max_new_tokens=r.max_tokens,
                    temperature=r.temperature,
                    top_p=r.top_p if r.temperature > 0 else 1.0,
                    seed=r.seed,
                    stop_strings=list(r.stop or ()),
                )
                for r in reqs
            ]
            gens = self.engine.generate(prompts, params)
            latency = time.perf_counter() - t0
        return [self._finish(tok, r, g, len(p), latency) for r, g, p in zip(reqs, gens, prompts, strict=True)]

    @staticmethod
    def _prompt_ids(tok, req: ChatRequest) -> list[int]:
        messages = with_schema_instruction(req.messages, req.json_schema) if req.json_schema else req.messages
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(tok(text, add_special_tokens=False)["input_ids"])

    def _finish(
        self, tok, req: ChatRequest, gen, prompt_tokens: int, latency: float
    ) -> ChatResponse | LLMError:
        ids, finish = list(gen.token_ids), gen.finish_reason
        if isinstance(gen.stop, int) and ids and ids[-1] == gen.stop:
            ids = ids[:-1]  # the end-of-sequence or stop token is not part of the answer, nor counted
        text = tok.decode(ids, skip_special_tokens=True)
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
