"""Local chat generation with Hugging Face transformers (CPU or GPU): the embedded default backend.

`num_threads` sets torch's intra-op threads for the whole process when given.

Requests are rendered with the tokenizer's chat template and generated in left-padded batches of at
most `max_batch`; requests whose sampling settings differ (temperature, top_p, seed, stop) go into
different batches, while differing `max_tokens` share one and are cut per row. Stop strings end
generation (via transformers' `stop_strings`) and are removed from the text, as in the OpenAI API.

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


def _group_key(req: ChatRequest) -> tuple:
    return (req.temperature, req.top_p, req.seed, tuple(req.stop or ()))


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
        self.dtype = dtype
        self.max_batch = max_batch
        self.strict_json = strict_json
        self.num_threads = num_threads
        self._model = None
        self._tok = None
        # One generate at a time: the model is not safe to share between threads mid-forward.
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load tokenizer and weights now (otherwise the first request does)."""
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..models.registry import resolve_model

        if self.num_threads:
            # Process-wide. On CPUs shared with other jobs one thread is often several times faster than
            # two, because every op waits for its slowest, descheduled worker.
            torch.set_num_threads(self.num_threads)
        path = resolve_model(self.model_name)
        tok = AutoTokenizer.from_pretrained(path)
        tok.padding_side = "left"  # decoder-only batches must end where generation starts
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        dtype = getattr(torch, self.dtype) if self.dtype else None
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        model.to(self.device).eval()
        self._tok, self._model = tok, model

    async def chat(self, req: ChatRequest) -> ChatResponse:
        (result,) = await asyncio.to_thread(self.generate, [req])
        if isinstance(result, LLMError):
            raise result
        return result

    async def chat_many(self, reqs: list[ChatRequest]) -> list[ChatResponse | LLMError]:
        return await asyncio.to_thread(self.generate, list(reqs))

    def generate(self, reqs: Sequence[ChatRequest]) -> list[ChatResponse | LLMError]:
        """Answers for `reqs`, in order; schema violations come back as `LLMError`s in place."""
        results: list[ChatResponse | LLMError | None] = [None] * len(reqs)
        groups: dict[tuple, list[int]] = {}
        for i, req in enumerate(reqs):
            groups.setdefault(_group_key(req), []).append(i)
        with self._lock:
            self._load_locked()
            for idx in groups.values():
                for start in range(0, len(idx), self.max_batch):
                    chunk = idx[start : start + self.max_batch]
                    for i, res in zip(chunk, self._generate_batch([reqs[i] for i in chunk]), strict=True):
                        results[i] = res
        return results  # type: ignore[return-value]

    def _generate_batch(self, reqs: list[ChatRequest]) -> list[ChatResponse | LLMError]:
        import torch

        tok, model = self._tok, self._model
        t0 = time.perf_counter()
        prompts = [
            tok.apply_chat_template(
                with_schema_instruction(r.messages, r.json_schema) if r.json_schema else r.messages,
                add_generation_prompt=True,
                tokenize=False,
            )
            for r in reqs
        ]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        first = reqs[0]
        gen: dict[str, Any] = {
            "max_new_tokens": max(r.max_tokens for r in reqs),
            "pad_token_id": tok.pad_token_id,
        }
        if first.temperature > 0:
            gen.update(do_sample=True, temperature=first.temperature, top_p=first.top_p)
            if first.seed is not None:
                torch.manual_seed(first.seed)
        else:
            gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if first.stop:
            gen.update(stop_strings=list(first.stop), tokenizer=tok)
        with torch.inference_mode():
            out = model.generate(**enc, **gen)
        latency = time.perf_counter() - t0
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        new = out[:, enc["input_ids"].shape[1] :].tolist()
        return [
            self._finish(r, ids, int(n), latency) for r, ids, n in zip(reqs, new, prompt_lens, strict=True)
        ]

    def _end_ids(self) -> set[int]:
        ids = {self._tok.pad_token_id, self._tok.eos_token_id}
        eos = getattr(self._model.generation_config, "eos_token_id", None)
        ids.update(eos if isinstance(eos, list) else [eos])
        return {i for i in ids if i is not None}

    def _finish(
        self, req: ChatRequest, ids: list[int], prompt_tokens: int, latency: float
    ) -> ChatResponse | LLMError:
        ids = ids[: req.max_tokens]
        end_ids = self._end_ids()
        finish = "length"
        for pos, tid in enumerate(ids):
            if tid in end_ids:
                ids, finish = ids[:pos], "stop"
                break
        text = self._tok.decode(ids, skip_special_tokens=True)
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
