"""The one interface through which the project talks to language models.

The synthesis agents (ToolMaker, AutoAgent, ToolActor) hold an `LLMClient` and never import an HTTP or
inference library themselves, so an endpoint (vLLM serve, a hosted API), vLLM offline, transformers or a
scripted fake can be swapped by configuration. Requests and responses follow the OpenAI chat API's
vocabulary; `json_schema` asks for output constrained to a JSON Schema where the backend can enforce it
(`supports_json_schema`), and is a prompt-level hint elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..errors import MtrError

ERROR_KINDS = ("timeout", "http", "connection", "bad_response")


class InvalidRequestError(MtrError, ValueError):
    """A `ChatRequest` (or the JSON body a server turned into one) is malformed; `field` names the culprit."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"chat request field '{field}': {message}")


@dataclass
class ChatRequest:
    """One chat completion request; `messages` are OpenAI chat messages (`role`, `content`, ...)."""

    messages: list[dict]
    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] | None = None
    json_schema: dict | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.messages, list) or not self.messages:
            raise InvalidRequestError("messages", "must be a non-empty list of chat messages")
        for i, msg in enumerate(self.messages):
            if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
                raise InvalidRequestError(f"messages[{i}]", "must be an object with a string 'role'")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise InvalidRequestError("max_tokens", f"must be an integer >= 1, got {self.max_tokens!r}")
        if not isinstance(self.temperature, int | float) or self.temperature < 0:
            raise InvalidRequestError("temperature", f"must be a number >= 0, got {self.temperature!r}")
        if not isinstance(self.top_p, int | float) or not 0 < self.top_p <= 1:
            raise InvalidRequestError("top_p", f"must be in (0, 1], got {self.top_p!r}")
        if self.stop is not None and (
            not isinstance(self.stop, list) or not all(isinstance(s, str) and s for s in self.stop)
        ):
            raise InvalidRequestError("stop", "must be a list of non-empty strings")
        if self.json_schema is not None and not isinstance(self.json_schema, dict):
            raise InvalidRequestError("json_schema", "must be a JSON Schema object")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63
        ):
            raise InvalidRequestError("seed", f"must be an integer in [0, 2**63), got {self.seed!r}")


@dataclass
class ChatResponse:
    """The generated text, why generation stopped (`stop` | `length`), token usage and wall time."""

    text: str
    finish_reason: str
    usage: dict = field(default_factory=dict)
    latency_s: float = 0.0
    model: str = ""


class LLMError(MtrError):
    """A request that did not produce a response.

    `kind` is one of `timeout`, `http` (the server answered with an error status, in `status`),
    `connection` (no answer: refused, reset, DNS) or `bad_response` (an answer that is not a chat
    completion, or output that violates the requested schema). `retryable` says whether the same request
    may succeed if sent again; `attempts` how many times it was sent; `retry_after_s` the delay a 429
    asked for.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        retryable: bool = False,
        status: int | None = None,
        attempts: int = 1,
        retry_after_s: float | None = None,
    ):
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown LLMError kind {kind!r}; expected one of {ERROR_KINDS}")
        self.kind = kind
        self.retryable = retryable
        self.status = status
        self.attempts = attempts
        self.retry_after_s = retry_after_s
        status_txt = f" {status}" if status is not None else ""
        super().__init__(f"LLM {kind}{status_txt}: {message}")


@runtime_checkable
class LLMClient(Protocol):
    """What every backend offers. `chat_many` returns errors in place instead of raising, in order."""

    name: str
    supports_json_schema: bool

    async def chat(self, req: ChatRequest) -> ChatResponse: ...

    async def chat_many(self, reqs: list[ChatRequest]) -> list[ChatResponse | LLMError]: ...


async def gather_settled(
    fn: Callable[[ChatRequest], Awaitable[ChatResponse]], reqs: Sequence[ChatRequest]
) -> list[ChatResponse | LLMError]:
    """Run `fn` over `reqs` concurrently, keeping order and turning `LLMError`s into results.

    Other exceptions propagate: they are bugs, not failed requests. Concurrency is bounded by `fn`
    itself (each client holds its own semaphore), so one client shared by many callers stays bounded.
    """

    async def settle(req: ChatRequest) -> ChatResponse | LLMError:
        try:
            return await fn(req)
        except LLMError as exc:
            return exc

    return list(await asyncio.gather(*(settle(r) for r in reqs)))


def run_sync(coro: Awaitable[Any]) -> Any:
    """Run a client coroutine from synchronous code (a script, a shard worker) and return its result."""
    return asyncio.run(coro)  # type: ignore[arg-type]
