"""Async client for any OpenAI-compatible chat endpoint (vLLM serve, hosted APIs, `mtr serve`).

Concurrency is bounded by one semaphore per client (so every caller sharing the client shares the
bound). Failed attempts are retried with capped exponential backoff and full jitter on connection
errors, timeouts, 429 and 5xx (a 429's `Retry-After` is honoured up to the cap); any other 4xx is the
caller's fault and fails at once. `json_schema` is sent as
`response_format={"type": "json_schema", "json_schema": {...}}`, which vLLM and OpenAI both enforce.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .protocol import ChatRequest, ChatResponse, LLMError, gather_settled

# httpcore's pool does work linear in its connection count on every request (about 8 ms of CPU per
# request at 64 connections against 2 ms at 8), so high concurrency is spread over pools of this size.
_SHARD = 8


@dataclass
class _Pool:
    """The httpx clients of one event loop and the free concurrency slots; slot i uses client i // _SHARD."""

    loop: asyncio.AbstractEventLoop
    clients: list
    slots: asyncio.Queue

    @classmethod
    def open(cls, loop, concurrency: int, headers: dict, timeout_s: float) -> _Pool:
        import httpx

        n_clients = -(-concurrency // _SHARD)
        limits = httpx.Limits(max_connections=_SHARD, max_keepalive_connections=_SHARD)
        clients = [
            httpx.AsyncClient(headers=headers, limits=limits, timeout=timeout_s) for _ in range(n_clients)
        ]
        slots: asyncio.Queue = asyncio.Queue()
        for i in range(concurrency):
            slots.put_nowait(i)
        return cls(loop, clients, slots)


@dataclass
class RetryPolicy:
    """`max_retries` extra attempts after the first; delays grow as base * 2**attempt, capped."""

    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        cap = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        if retry_after is not None:
            return min(self.backoff_max_s, max(0.0, retry_after))
        # Full jitter: concurrent clients that failed together do not retry together.
        return rng.uniform(0.0, cap)


def build_payload(req: ChatRequest, model: str, strict_schema: bool = False) -> dict[str, Any]:
    """The JSON body of `POST /v1/chat/completions` for `req`."""
    body: dict[str, Any] = {
        "model": model,
        "messages": req.messages,
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
        "top_p": req.top_p,
    }
    if req.seed is not None:
        body["seed"] = req.seed
    if req.stop:
        body["stop"] = list(req.stop)
    if req.json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": req.json_schema, "strict": strict_schema},
        }
    return body


def parse_completion(data: Any, latency_s: float, model: str) -> ChatResponse:
    """A `ChatResponse` from a decoded chat completion body, or `LLMError(kind="bad_response")`."""
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content")
        finish = choice.get("finish_reason") or "stop"
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise LLMError("bad_response", f"not a chat completion ({exc!r}): {str(data)[:200]}") from None
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise LLMError("bad_response", f"choices[0].message.content is {type(text).__name__}, not a string")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return ChatResponse(text, str(finish), usage, latency_s, str(data.get("model") or model))


class OpenAIHTTPClient:
    """`LLMClient` over HTTP. Use as `async with OpenAIHTTPClient(...) as client:` or call `aclose()`.

    `api_key` wins over the environment variable named by `api_key_env`; with neither, no
    Authorization header is sent (local vLLM / `mtr serve` need none).
    """

    supports_json_schema = True

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 16,
        timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        strict_schema: bool = False,
        seed: int | None = None,
        name: str | None = None,
    ):
        if concurrency < 1:
            raise ConfigError("llm.concurrency", f"must be >= 1, got {concurrency}")
        if timeout_s <= 0:
            raise ConfigError("llm.timeout_s", f"must be > 0, got {timeout_s}")
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model = model
        self.name = name or f"openai-http:{model}"
        self.api_key = api_key if api_key is not None else os.environ.get(api_key_env)
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.strict_schema = strict_schema
        self._rng = random.Random(seed)
        self._pool: _Pool | None = None

    # -- per-event-loop state: callers may run the client under several `asyncio.run`s in turn.
    def _session(self) -> _Pool:
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool.loop is not loop:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._pool = _Pool.open(loop, self.concurrency, headers, self.timeout_s)
        return self._pool

    async def aclose(self) -> None:
        if self._pool is not None and self._pool.loop is asyncio.get_running_loop():
            for http in self._pool.clients:
                await http.aclose()
        self._pool = None

    async def __aenter__(self) -> OpenAIHTTPClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def chat(self, req: ChatRequest) -> ChatResponse:
        pool = self._session()
        body = build_payload(req, self.model, self.strict_schema)
        attempt = 0
        while True:
            try:
                slot = await pool.slots.get()
                try:
                    return await self._post_once(pool.clients[slot // _SHARD], body)
                finally:
                    pool.slots.put_nowait(slot)
            except LLMError as exc:
                exc.attempts = attempt + 1
                if not exc.retryable or attempt >= self.retry.max_retries:
                    raise
                await asyncio.sleep(self.retry.delay(attempt, self._rng, exc.retry_after_s))
                attempt += 1

    async def chat_many(self, reqs: list[ChatRequest]) -> list[ChatResponse | LLMError]:
        return await gather_settled(self.chat, reqs)

    async def _post_once(self, http, body: dict) -> ChatResponse:
        import httpx

        t0 = time.perf_counter()
        try:
            resp = await http.post(f"{self.base_url}/chat/completions", json=body)
        except httpx.TimeoutException as exc:
            raise LLMError(
                "timeout", f"no answer within {self.timeout_s}s ({type(exc).__name__})", retryable=True
            ) from None
        except (httpx.TransportError, OSError) as exc:
            raise LLMError(
                "connection", f"{self.base_url}: {type(exc).__name__}: {exc}", retryable=True
            ) from None
        latency = time.perf_counter() - t0
        if resp.status_code != 200:
            raise _http_error(resp)
        try:
            data = resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LLMError("bad_response", f"body is not JSON ({exc}): {resp.text[:200]!r}") from None
        return parse_completion(data, latency, self.model)

    async def list_models(self) -> list[str]:
        """Model ids the endpoint serves (`GET /v1/models`); one attempt, no retries."""
        import httpx

        http = self._session().clients[0]
        try:
            resp = await http.get(f"{self.base_url}/models")
        except httpx.TimeoutException:
            raise LLMError("timeout", f"{self.base_url}/models: no answer within {self.timeout_s}s") from None
        except (httpx.TransportError, OSError) as exc:
            raise LLMError("connection", f"{self.base_url}/models: {exc}", retryable=True) from None
        if resp.status_code != 200:
            raise _http_error(resp)
        try:
            return [str(m["id"]) for m in resp.json()["data"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise LLMError("bad_response", f"/v1/models body is not a model list ({exc!r})") from None

    async def wait_healthy(self, timeout: float = 60.0, interval: float = 0.1) -> list[str]:
        """Poll `/v1/models` until it lists models or `timeout` passes; returns the model ids."""
        deadline = time.monotonic() + timeout
        last: LLMError | None = None
        while True:
            try:
                models = await self.list_models()
                if models:
                    return models
                last = LLMError("bad_response", "/v1/models lists no model yet")
            except LLMError as exc:
                last = exc
            if time.monotonic() >= deadline:
                raise LLMError("timeout", f"{self.base_url} not healthy after {timeout}s; last error: {last}")
            await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def _http_error(resp) -> LLMError:
    status = resp.status_code
    retryable = status == 429 or status >= 500
    try:
        detail = resp.json().get("error", {})
        message = detail.get("message") if isinstance(detail, dict) else str(detail)
    except (ValueError, AttributeError):
        message = None
    retry_after: float | None = None
    if status == 429:
        try:
            retry_after = float(resp.headers.get("retry-after", ""))
        except ValueError:
            retry_after = None  # an HTTP date or garbage: fall back to jittered backoff
    return LLMError(
        "http",
        message or resp.text[:200] or resp.reason_phrase,
        retryable=retryable,
        status=status,
        retry_after_s=retry_after,
    )
