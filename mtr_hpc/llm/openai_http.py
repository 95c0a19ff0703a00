"""Async client for any OpenAI-compatible chat endpoint (vLLM serve, hosted APIs, `mtr serve`).

Concurrency is bounded per client (every caller sharing the client shares the bound). Failed attempts
are retried with capped exponential backoff and full jitter on connection errors, timeouts, 429 and
5xx (a 429's `Retry-After` is honoured up to the cap); any other 4xx is the caller's fault and fails at
once. `json_schema` is sent as `response_format={"type": "json_schema", "json_schema": {...}}`, which
vLLM and OpenAI both enforce.

Transport: `https://` endpoints (hosted APIs: TLS, proxies, compression) go through httpx. Plain
`http://` endpoints (vLLM serve on a cluster node, `mtr serve`) are spoken to over keep-alive HTTP/1.1
connections on asyncio streams (`_StreamTransport`), because at 64 requests in flight httpx spends
about 2 ms of CPU per request against 0.25 ms for these, which capped one process near 400 requests/s.
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

# httpcore's pool does work linear in its connection count on every request, so httpx traffic is
# spread over clients of this many connections each.
_SHARD = 4

Reply = tuple[int, dict[str, str], bytes]  # status, lower-cased headers, body


class _HttpxTransport:
    """Requests through a few small httpx clients (slot i uses client i // _SHARD)."""

    def __init__(self, concurrency: int, headers: dict, timeout_s: float):
        import httpx

        limits = httpx.Limits(max_connections=_SHARD, max_keepalive_connections=_SHARD)
        n = -(-concurrency // _SHARD)
        self.timeout_s = timeout_s
        self.clients = [
            httpx.AsyncClient(headers=headers, limits=limits, timeout=timeout_s) for _ in range(n)
        ]

    async def send(self, method: str, url: str, body: bytes | None, slot: int = 0) -> Reply:
        import httpx

        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            resp = await self.clients[slot // _SHARD].request(method, url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise LLMError(
                "timeout", f"{url}: no answer within {self.timeout_s}s ({type(exc).__name__})", retryable=True
            ) from None
        except (httpx.TransportError, OSError) as exc:
            raise LLMError("connection", f"{url}: {type(exc).__name__}: {exc}", retryable=True) from None
        return resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, resp.content

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


class _StreamTransport:
    """HTTP/1.1 over asyncio streams for `http://` URLs: keep-alive, Content-Length or chunked bodies.

    A request that fails on a reused connection before any byte of the answer arrived is resent once
    on a fresh connection, since the server may have closed the idle connection in the meantime.
    """

    def __init__(self, base_url: str, headers: dict, timeout_s: float):
        import urllib.parse

        parts = urllib.parse.urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout_s = timeout_s
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._head = f"Host: {self.host}:{self.port}\r\nAccept-Encoding: identity\r\n{extra}"
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def send(self, method: str, url: str, body: bytes | None, slot: int = 0) -> Reply:
        path = url.split("://", 1)[-1].partition("/")[2]
        head = f"{method} /{path} HTTP/1.1\r\n{self._head}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        data = (head + "\r\n").encode("latin-1") + (body or b"")
        try:
            async with asyncio.timeout(self.timeout_s):
                while self._idle:
                    conn = self._idle.pop()
                    try:
                        return await self._exchange(conn, data)
                    except _StaleConnection:
                        continue
                conn = await asyncio.open_connection(self.host, self.port)
                return await self._exchange(conn, data, fresh=True)
        except TimeoutError:
            raise LLMError("timeout", f"{url}: no answer within {self.timeout_s}s", retryable=True) from None
        except (OSError, asyncio.IncompleteReadError, _StaleConnection) as exc:
            raise LLMError("connection", f"{url}: {type(exc).__name__}: {exc}", retryable=True) from None
        except ValueError as exc:
            raise LLMError("bad_response", f"{url}: malformed HTTP answer: {exc}") from None

    async def _exchange(self, conn, data: bytes, fresh: bool = False) -> Reply:
        reader, writer = conn
        keep = False
        try:
            writer.write(data)
            await writer.drain()
            status_line = await reader.readline()
            if not status_line:
                if fresh:
                    raise ConnectionResetError("connection closed before an answer")
                raise _StaleConnection()
            version, status, *_ = status_line.decode("latin-1").split(" ", 2)
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                key, _, value = line.decode("latin-1").partition(":")
                headers[key.strip().lower()] = value.strip()
            content = await self._read_body(reader, headers)
            keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
            return int(status), headers, content
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise (exc if fresh else _StaleConnection()) from None
        finally:
            if keep:
                self._idle.append(conn)
            else:
                writer.close()

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = []
            while size := int((await reader.readline()).split(b";")[0].strip() or b"0", 16):
                chunks.append(await reader.readexactly(size))
                await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        if "content-length" in headers:
            return await reader.readexactly(int(headers["content-length"]))
        headers["connection"] = "close"  # the body runs to the end of the connection
        return await reader.read()

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop()[1].close()


class _StaleConnection(Exception):
    """A kept-alive connection turned out to be closed by the server before this request."""


@dataclass
class _Pool:
    """The transport of one event loop and its free concurrency slots."""

    loop: asyncio.AbstractEventLoop
    transport: _HttpxTransport | _StreamTransport
    slots: asyncio.Queue

    @classmethod
    def open(cls, loop, base_url: str, concurrency: int, headers: dict, timeout_s: float) -> _Pool:
        if base_url.startswith("http://"):
            transport: _HttpxTransport | _StreamTransport = _StreamTransport(base_url, headers, timeout_s)
        else:
            transport = _HttpxTransport(concurrency, headers, timeout_s)
        slots: asyncio.Queue = asyncio.Queue()
        for i in range(concurrency):
            slots.put_nowait(i)
        return cls(loop, transport, slots)


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
            self._pool = _Pool.open(loop, self.base_url, self.concurrency, headers, self.timeout_s)
        return self._pool

    async def aclose(self) -> None:
        if self._pool is not None and self._pool.loop is asyncio.get_running_loop():
            await self._pool.transport.aclose()
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
                    return await self._post_once(pool.transport, slot, body)
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

    async def _post_once(self, transport, slot: int, body: dict) -> ChatResponse:
        t0 = time.perf_counter()
        url = f"{self.base_url}/chat/completions"
        status, headers, content = await transport.send("POST", url, json.dumps(body).encode(), slot)
        latency = time.perf_counter() - t0
        if status != 200:
            raise _http_error(status, headers, content)
        try:
            data = json.loads(content)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LLMError("bad_response", f"body is not JSON ({exc}): {content[:200]!r}") from None
        return parse_completion(data, latency, self.model)

    async def list_models(self) -> list[str]:
        """Model ids the endpoint serves (`GET /v1/models`); one attempt, no retries."""
        status, headers, content = await self._session().transport.send(
            "GET", f"{self.base_url}/models", None
        )
        if status != 200:
            raise _http_error(status, headers, content)
        try:
            return [str(m["id"]) for m in json.loads(content)["data"]]
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


def _http_error(status: int, headers: dict[str, str], content: bytes) -> LLMError:
    retryable = status == 429 or status >= 500
    try:
        detail = json.loads(content).get("error", {})
        message = detail.get("message") if isinstance(detail, dict) else str(detail)
    except (ValueError, AttributeError):
        message = None
    retry_after: float | None = None
    if status == 429:
        try:
            retry_after = float(headers.get("retry-after", ""))
        except ValueError:
            retry_after = None  # an HTTP date or garbage: fall back to jittered backoff
    return LLMError(
        "http",
        message or content[:200].decode("utf-8", "replace") or f"status {status}",
        retryable=retryable,
        status=status,
        retry_after_s=retry_after,
    )
