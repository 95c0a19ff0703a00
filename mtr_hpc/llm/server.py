"""`mtr serve`: a small OpenAI-compatible chat server over the transformers client or the echo backend.

Routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /health`, and `GET /stats` (this server's
own counters: requests, injected failures, in-flight maximum, batches). Built on the standard
library's `ThreadingHTTPServer` (one thread per connection, HTTP/1.1 keep-alive) because no async web
framework is a dependency of the project. Concurrent requests to the transformers backend are
gathered by one worker thread into batches of up to `max_batch`; the echo backend answers in the
handler thread. Not supported: streaming, `n > 1`, tool calling by the served model, logprobs.

For tests and benchmarks: `latency_ms` delays every completion, `fail_first` answers the first N
completions with 500, and `fail_rate` then fails a seeded random fraction of them.
"""

from __future__ import annotations

import json
import queue
import random
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..errors import MtrError
from .fake import echo_response
from .protocol import ChatRequest, ChatResponse, InvalidRequestError, LLMError

BACKENDS = ("transformers", "echo")
ROLES = ("system", "developer", "user", "assistant", "tool")


@dataclass
class ServeConfig:
    model: str = "smollm2-135m"
    backend: str = "transformers"
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 8
    latency_ms: float = 0.0
    fail_rate: float = 0.0
    fail_first: int = 0
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    served_model_name: str | None = None
    batch_wait_ms: float = 2.0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise MtrError(f"unknown backend '{self.backend}'; expected one of {', '.join(BACKENDS)}")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise MtrError(f"fail_rate must be in [0, 1], got {self.fail_rate}")
        if self.max_batch < 1 or self.latency_ms < 0 or self.fail_first < 0:
            raise MtrError("max_batch must be >= 1; latency_ms and fail_first must be >= 0")

    @property
    def model_id(self) -> str:
        return self.served_model_name or (self.model if self.backend == "transformers" else "echo")


@dataclass
class ServerStats:
    requests: int = 0
    completions: int = 0
    injected_failures: int = 0
    bad_requests: int = 0
    json_schema_requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    batches: int = 0
    max_batch_size: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}


class BatchingBackend:
    """Feeds concurrent requests to `TransformersClient.generate` in batches from one worker thread."""

    def __init__(self, client, max_batch: int, wait_s: float, stats: ServerStats):
        self.client, self.max_batch, self.wait_s, self.stats = client, max_batch, wait_s, stats
        self._queue: queue.Queue[tuple[ChatRequest, Future]] = queue.Queue()
        threading.Thread(target=self._work, name="mtr-serve-batcher", daemon=True).start()

    def answer(self, req: ChatRequest) -> ChatResponse:
        fut: Future = Future()
        self._queue.put((req, fut))
        result = fut.result()
        if isinstance(result, LLMError):
            raise result
        return result

    def _work(self) -> None:
        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self.wait_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            with self.stats._lock:
                self.stats.batches += 1
                self.stats.max_batch_size = max(self.stats.max_batch_size, len(batch))
            try:
                results = self.client.generate([req for req, _ in batch])
            except Exception as exc:  # a failed batch must fail its requests, not kill the worker
                results = [exc] * len(batch)
            for (_, fut), res in zip(batch, results, strict=True):
                if isinstance(res, Exception) and not isinstance(res, LLMError):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)


def request_from_body(body: Any) -> ChatRequest:
    """A `ChatRequest` from an OpenAI chat completion body; `InvalidRequestError` names the bad field."""
    if not isinstance(body, dict):
        raise InvalidRequestError("<body>", "must be a JSON object")
    if body.get("stream"):
        raise InvalidRequestError("stream", "streaming is not supported by this server")
    if body.get("n", 1) != 1:
        raise InvalidRequestError("n", "only n=1 is supported")
    messages = body.get("messages")
    if isinstance(messages, list):
        for i, msg in enumerate(messages):
            if isinstance(msg, dict) and msg.get("role") not in ROLES:
                raise InvalidRequestError(f"messages[{i}].role", f"must be one of {', '.join(ROLES)}")
    stop = body.get("stop")
    schema = None
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise InvalidRequestError("response_format.json_schema.schema", "must be a JSON Schema object")
        schema = spec["schema"]
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        schema = {"type": "object"}
    elif fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise InvalidRequestError("response_format", "type must be text, json_object or json_schema")
    return ChatRequest(
        messages=messages,  # type: ignore[arg-type]
        max_tokens=next(
            (body[k] for k in ("max_completion_tokens", "max_tokens") if body.get(k) is not None), 512
        ),
        temperature=body.get("temperature", 1.0),  # the OpenAI API's default
        top_p=body.get("top_p", 1.0),
        seed=body.get("seed"),
        stop=[stop] if isinstance(stop, str) else stop,
        json_schema=schema,
    )


def completion_body(resp: ChatResponse, model_id: str) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_id,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": resp.text},
                "finish_reason": resp.finish_reason,
            }
        ],
        "usage": resp.usage,
    }


def _error_body(message: str, typ: str, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": typ, "param": param, "code": None}}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512  # a burst of new keep-alive connections must not overflow the backlog


class LLMServer:
    """The server object; `start()` serves from a background thread, `serve_forever()` from this one."""

    def __init__(self, cfg: ServeConfig, client=None):
        self.cfg = cfg
        self.stats = ServerStats()
        self._rng = random.Random(cfg.seed)
        if cfg.backend == "transformers":
            if client is None:
                from .transformers_client import TransformersClient

                # The server returns what the model wrote; schema checking is the caller's job.
                client = TransformersClient(
                    cfg.model, device=cfg.device, max_batch=cfg.max_batch, strict_json=False
                )
            client.load()
            self._backend = BatchingBackend(client, cfg.max_batch, cfg.batch_wait_ms / 1000.0, self.stats)
        self.httpd = _HTTPServer((cfg.host, cfg.port), _make_handler(self))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LLMServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="mtr-serve", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject_failure(self) -> bool:
        with self.stats._lock:
            fail = self.stats.completions < self.cfg.fail_first or (
                self.cfg.fail_rate > 0 and self._rng.random() < self.cfg.fail_rate
            )
            self.stats.completions += 1
            self.stats.injected_failures += int(fail)
        return fail

    def complete(self, req: ChatRequest) -> tuple[int, dict]:
        """HTTP status and body answering `req`: injected latency, then an injected fault or the answer."""
        if self.cfg.latency_ms:
            time.sleep(self.cfg.latency_ms / 1000.0)
        if self.inject_failure():
            return 500, _error_body("injected failure", "server_error")
        try:
            if self.cfg.backend == "echo":
                resp = echo_response(req, self.cfg.model_id, self.cfg.latency_ms / 1000.0)
            else:
                resp = self._backend.answer(req)
        except LLMError as exc:
            return 500, _error_body(str(exc), "server_error")
        except Exception as exc:  # the client must get an answer, not a dropped connection
            return 500, _error_body(f"{type(exc).__name__}: {exc}", "server_error")
        return 200, completion_body(resp, self.cfg.model_id)


def _make_handler(server: LLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        app = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, each answer waits for a delayed ACK.
    disable_nagle_algorithm = True
    app: LLMServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (signature fixed by the base)
        pass

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/health":
            self._send(200, {"status": "ok"})
        elif self.path == "/v1/models":
            model = {"id": self.app.cfg.model_id, "object": "model", "created": 0, "owned_by": "mtr-hpc"}
            self._send(200, {"object": "list", "data": [model]})
        elif self.path == "/stats":
            self._send(200, self.app.stats.snapshot())
        else:
            self._send(404, _error_body(f"no route GET {self.path}", "not_found"))

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path != "/v1/chat/completions":
            self._send(404, _error_body(f"no route POST {self.path}", "not_found"))
            return
        stats = self.app.stats
        with stats._lock:
            stats.requests += 1
        try:
            req = request_from_body(json.loads(raw or b"null"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self._bad_request(f"body is not JSON: {exc}", None)
            return
        except InvalidRequestError as exc:
            self._bad_request(str(exc), exc.field)
            return
        with stats._lock:
            stats.json_schema_requests += int(req.json_schema is not None)
            stats.in_flight += 1
            stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            status, body = self.app.complete(req)
        finally:
            with stats._lock:
                stats.in_flight -= 1
        self._send(status, body)

    def _bad_request(self, message: str, param: str | None) -> None:
        with self.app.stats._lock:
            self.app.stats.bad_requests += 1
        self._send(400, _error_body(message, "invalid_request_error", param))

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (its timeout); nothing left to tell it
