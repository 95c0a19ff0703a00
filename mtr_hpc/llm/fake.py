"""Deterministic clients that need no model: the echo backend and a scripted client for tests.

`echo_text` is what `mtr serve --backend echo` answers: a JSON instance of the requested schema when
the request carries one, else the last user message. `ScriptedClient` replays a fixed list of answers
(or a function of the request) and records every request, so agent code can be tested without an LLM.
Token counts here are whitespace word counts, not tokenizer counts.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from .protocol import ChatRequest, ChatResponse, LLMError, gather_settled

_MAX_DEPTH = 8


def message_text(msg: dict) -> str:
    """The text of a chat message whose `content` is a string or a list of OpenAI content parts."""
    content = msg.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def last_user_text(messages: Sequence[dict]) -> str:
    for msg in reversed(messages):
        if msg.get("role") == "user":
            return message_text(msg)
    return ""


def schema_instance(schema: Any, depth: int = 0) -> Any:
    """A small deterministic value valid for common JSON Schemas.

    Covers type, enum, const, default, examples, required/properties (an object with a `required`
    list gets exactly those properties), items/minItems, min/max, minLength, anyOf/oneOf (the first
    branch, merged into the schema around it) and allOf (merged). `pattern`, `format` and `$ref` are
    not interpreted, so schemas relying on them may get an invalid instance.
    """
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if schema.get("enum"):
        return schema["enum"][0]
    if isinstance(schema.get("examples"), list) and schema["examples"]:
        return schema["examples"][0]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            branch = schema[key][0]
            if isinstance(branch, dict) and "required" in branch and "type" not in branch:
                # `{properties, anyOf: [{required: [...]}, ...]}`: the branch constrains the object around it.
                rest = {k: v for k, v in schema.items() if k != key}
                return schema_instance({**rest, "allOf": [branch, *rest.get("allOf", [])]}, depth + 1)
            return schema_instance(branch, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if isinstance(part, dict):
                merged.setdefault("properties", {}).update(part.get("properties", {}))
                merged["required"] = list(merged.get("required", [])) + list(part.get("required", []))
                merged.setdefault("type", part.get("type"))
        return schema_instance(merged, depth + 1)
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), typ[0] if typ else None)
    if typ is None:
        typ = "object" if "properties" in schema else "string"
    return _typed_instance(typ, schema, depth)


def _typed_instance(typ: str, schema: dict, depth: int) -> Any:
    if typ == "object":
        props = schema.get("properties") or {}
        required = schema.get("required")
        if isinstance(required, list) and required:
            props = {name: props.get(name, {}) for name in required}
        return {name: schema_instance(sub, depth + 1) for name, sub in props.items()}
    if typ == "array":
        n = int(schema.get("minItems", 1 if schema.get("items") else 0))
        return [schema_instance(schema.get("items", {}), depth + 1) for _ in range(n)]
    if typ in ("integer", "number"):
        value = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
        if "maximum" in schema:
            value = min(value, schema["maximum"])
        return int(value) if typ == "integer" else float(value)
    if typ == "boolean":
        return True
    if typ == "null":
        return None
    text = "echo"
    min_len = int(schema.get("minLength", 0))
    max_len = schema.get("maxLength")
    text = text.ljust(min_len, "o")
    return text[: int(max_len)] if max_len is not None else text


def echo_text(req: ChatRequest) -> str:
    if req.json_schema is not None:
        return json.dumps(schema_instance(req.json_schema), ensure_ascii=False)
    return last_user_text(req.messages)


def _word_usage(req: ChatRequest, text: str) -> dict:
    prompt = sum(len(message_text(m).split()) for m in req.messages)
    completion = len(text.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def echo_response(req: ChatRequest, model: str = "echo", latency_s: float = 0.0) -> ChatResponse:
    text = echo_text(req)
    return ChatResponse(text, "stop", _word_usage(req, text), latency_s, model)


class EchoClient:
    """An in-process `LLMClient` answering like `mtr serve --backend echo`, after `latency_s`."""

    supports_json_schema = True

    def __init__(self, name: str = "echo", latency_s: float = 0.0):
        self.name = name
        self.latency_s = latency_s

    async def chat(self, req: ChatRequest) -> ChatResponse:
        t0 = time.perf_counter()
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return echo_response(req, self.name, time.perf_counter() - t0)

    async def chat_many(self, reqs: list[ChatRequest]) -> list[ChatResponse | LLMError]:
        return await gather_settled(self.chat, reqs)


Script = Sequence["str | BaseException"] | Callable[[ChatRequest], "str | BaseException"]


class ScriptedClient:
    """Answers from a script: a list consumed in call order, or a function of the request.

    A scripted exception is raised instead of answered. Every request is appended to `requests`.
    Running past the end of a list answers `default` when one is given, else raises
    `LLMError(kind="bad_response")` naming the call number.
    """

    def __init__(
        self,
        script: Script,
        name: str = "scripted",
        supports_json_schema: bool = True,
        default: str | None = None,
    ):
        self.name = name
        self.supports_json_schema = supports_json_schema
        self.default = default
        self._script = script if callable(script) else list(script)
        self.requests: list[ChatRequest] = []

    async def chat(self, req: ChatRequest) -> ChatResponse:
        self.requests.append(req)
        if callable(self._script):
            answer = self._script(req)
        elif len(self.requests) <= len(self._script):
            answer = self._script[len(self.requests) - 1]
        elif self.default is not None:
            answer = self.default
        else:
            raise LLMError(
                "bad_response",
                f"scripted client '{self.name}' has {len(self._script)} answers; call {len(self.requests)} has none",
            )
        if isinstance(answer, BaseException):
            raise answer
        return ChatResponse(answer, "stop", _word_usage(req, answer), 0.0, self.name)

    async def chat_many(self, reqs: list[ChatRequest]) -> list[ChatResponse | LLMError]:
        # Sequential so that list scripts map to requests in order.
        results: list[ChatResponse | LLMError] = []
        for req in reqs:
            try:
                results.append(await self.chat(req))
            except LLMError as exc:
                results.append(exc)
        return results
