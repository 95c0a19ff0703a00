"""The OpenAI-compatible client against `mtr serve` over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import jsonschema
import pytest

from mtr_hpc.llm.openai_http import OpenAIHTTPClient, RetryPolicy, build_payload
from mtr_hpc.llm.protocol import ChatRequest, ChatResponse, LLMError
from mtr_hpc.llm.server import LLMServer, ServeConfig
from mtr_hpc.models.parallel import free_port

FAST_RETRY = RetryPolicy(max_retries=3, backoff_base_s=0.01, backoff_max_s=0.05)
NO_RETRY = RetryPolicy(max_retries=0)


def user(text: str) -> list[dict]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


@pytest.fixture
def serve():
    """Start echo servers in threads on free ports; all are stopped at the end of the test."""
    servers: list[LLMServer] = []

    def start(**cfg) -> LLMServer:
        server = LLMServer(ServeConfig(backend="echo", port=0, **cfg)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def run(coro):
    return asyncio.run(coro)


async def one_chat(url: str, req: ChatRequest, **kw) -> ChatResponse:
    async with OpenAIHTTPClient(url, "echo", **kw) as client:
        return await client.chat(req)


def test_chat_round_trip(serve):
    server = serve()
    resp = run(one_chat(server.url, ChatRequest(user("hello there"), max_tokens=16), retry=NO_RETRY))
    assert resp.text == "hello there"
    assert resp.finish_reason == "stop"
    assert resp.model == "echo"
    assert resp.usage["completion_tokens"] == 2
    assert resp.latency_s > 0
    assert server.stats.snapshot()["completions"] == 1


def test_models_health_and_wait_healthy(serve):
    server = serve()
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    client = OpenAIHTTPClient(server.url + "/v1/", "echo")
    assert run(client.wait_healthy(5)) == ["echo"]
    dead = OpenAIHTTPClient(f"http://127.0.0.1:{free_port()}", "echo", timeout_s=0.2)
    t0 = time.monotonic()
    with pytest.raises(LLMError) as err:
        run(dead.wait_healthy(0.3, interval=0.05))
    assert err.value.kind == "timeout" and "connection" in str(err.value).lower()
    assert time.monotonic() - t0 < 3


def test_retry_on_500_then_success(serve):
    server = serve(fail_first=2)
    resp = run(one_chat(server.url, ChatRequest(user("again")), retry=FAST_RETRY))
    assert resp.text == "again"
    stats = server.stats.snapshot()
    assert stats["completions"] == 3 and stats["injected_failures"] == 2


def test_gives_up_after_max_retries(serve):
    server = serve(fail_first=100)
    with pytest.raises(LLMError) as err:
        run(one_chat(server.url, ChatRequest(user("x")), retry=RetryPolicy(2, 0.01, 0.02)))
    assert (err.value.kind, err.value.status, err.value.retryable, err.value.attempts) == (
        "http",
        500,
        True,
        3,
    )
    assert server.stats.snapshot()["completions"] == 3


def test_no_retry_on_400(serve):
    server = serve()
    req = ChatRequest([{"role": "robot", "content": "beep"}])
    with pytest.raises(LLMError) as err:
        run(one_chat(server.url, req, retry=FAST_RETRY))
    assert (err.value.kind, err.value.status, err.value.retryable, err.value.attempts) == (
        "http",
        400,
        False,
        1,
    )
    assert "messages[0].role" in str(err.value)
    stats = server.stats.snapshot()
    assert stats["requests"] == 1 and stats["bad_requests"] == 1 and stats["completions"] == 0


def test_timeout(serve):
    server = serve(latency_ms=1500)
    t0 = time.monotonic()
    with pytest.raises(LLMError) as err:
        run(one_chat(server.url, ChatRequest(user("slow")), timeout_s=0.2, retry=NO_RETRY))
    assert err.value.kind == "timeout" and err.value.retryable
    assert time.monotonic() - t0 < 1.2


def test_connection_refused_after_retries():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(LLMError) as err:
        run(one_chat(url, ChatRequest(user("anyone?")), retry=RetryPolicy(2, 0.01, 0.02)))
    assert err.value.kind == "connection" and err.value.attempts == 3


def test_concurrency_limit_respected(serve):
    server = serve(latency_ms=40)

    async def go():
        async with OpenAIHTTPClient(server.url, "echo", concurrency=4, retry=NO_RETRY) as client:
            return await client.chat_many([ChatRequest(user(f"q{i}")) for i in range(24)])

    results = run(go())
    assert [r.text for r in results] == [f"q{i}" for i in range(24)]
    assert httpx.get(f"{server.url}/stats").json()["max_in_flight"] == 4


def test_chat_many_keeps_errors_in_place(serve):
    server = serve(fail_first=1)

    async def go():
        async with OpenAIHTTPClient(server.url, "echo", concurrency=1, retry=NO_RETRY) as client:
            return await client.chat_many([ChatRequest(user(f"q{i}")) for i in range(3)])

    results = run(go())
    assert isinstance(results[0], LLMError) and results[0].status == 500
    assert [r.text for r in results[1:]] == ["q1", "q2"]


def test_json_schema_forwarded_as_response_format(serve):
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 6},
            "year": {"type": "integer", "minimum": 1900},
            "kind": {"enum": ["film", "book"]},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        },
        "required": ["title", "year", "kind", "tags"],
        "additionalProperties": False,
    }
    req = ChatRequest(user("a work"), json_schema=schema)
    body = build_payload(req, "m")
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": False},
    }
    server = serve()
    resp = run(one_chat(server.url, req, retry=NO_RETRY))
    jsonschema.validate(json.loads(resp.text), schema)  # only possible if the server saw the schema
    assert server.stats.snapshot()["json_schema_requests"] == 1


def test_seeded_fail_rate_is_reproducible(serve):
    async def pattern(url):
        async with OpenAIHTTPClient(url, "echo", concurrency=1, retry=NO_RETRY) as client:
            results = await client.chat_many([ChatRequest(user("x")) for _ in range(30)])
        return [isinstance(r, LLMError) for r in results]

    a = run(pattern(serve(fail_rate=0.5, seed=3).url))
    b = run(pattern(serve(fail_rate=0.5, seed=3).url))
    assert a == b and 5 < sum(a) < 25


def test_client_survives_several_event_loops(serve):
    server = serve()
    client = OpenAIHTTPClient(server.url, "echo", retry=NO_RETRY)
    assert run(client.chat(ChatRequest(user("one")))).text == "one"
    assert run(client.chat(ChatRequest(user("two")))).text == "two"


def test_server_rejects_malformed_bodies(serve):
    server = serve()
    url = f"{server.url}/v1/chat/completions"
    bad = [
        (b"{not json", None),
        (json.dumps({"messages": []}).encode(), "messages"),
        (json.dumps({"messages": user("x"), "stream": True}).encode(), "stream"),
        (json.dumps({"messages": user("x"), "max_tokens": 0}).encode(), "max_tokens"),
        (json.dumps({"messages": user("x"), "response_format": {"type": "xml"}}).encode(), "response_format"),
    ]
    for raw, param in bad:
        resp = httpx.post(url, content=raw, headers={"Content-Type": "application/json"})
        assert resp.status_code == 400, raw
        assert resp.json()["error"]["param"] == param
    assert httpx.get(f"{server.url}/nope").status_code == 404


class _RecordingModel:
    """Stands in for TransformersClient inside the server: records batch sizes, answers in upper case."""

    def __init__(self):
        self.batches: list[int] = []
        self.lock = threading.Lock()

    def load(self):
        pass

    def generate(self, reqs):
        with self.lock:
            self.batches.append(len(reqs))
        time.sleep(0.05)
        return [ChatResponse(r.messages[-1]["content"].upper(), "stop", {}, 0.05, "rec") for r in reqs]


def test_server_batches_concurrent_requests():
    model = _RecordingModel()
    cfg = ServeConfig(backend="transformers", model="rec", port=0, max_batch=4, batch_wait_ms=20)
    with LLMServer(cfg, client=model) as server:

        async def go():
            async with OpenAIHTTPClient(server.url, "rec", concurrency=12, retry=NO_RETRY) as client:
                return await client.chat_many([ChatRequest(user(f"q{i}")) for i in range(12)])

        results = run(go())
    assert [r.text for r in results] == [f"Q{i}" for i in range(12)]
    assert max(model.batches) == 4 and sum(model.batches) == 12 and len(model.batches) < 12


@pytest.mark.slow
def test_mtr_serve_transformers_answers_once(repo_root):
    """The real SmolLM2 behind `mtr serve`, over HTTP: one short greedy answer."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    cmd = [sys.executable, "-m", "mtr_hpc", "serve", "--model", "smollm2-135m", "--port", str(port)]
    cmd += ["--threads", "1", "--max-batch", "2"]
    proc = subprocess.Popen(cmd, cwd=repo_root, env=env, stderr=subprocess.PIPE, text=True)
    try:

        async def go():
            async with OpenAIHTTPClient(f"http://127.0.0.1:{port}", "smollm2-135m", retry=NO_RETRY) as client:
                models = await client.wait_healthy(180)
                req = ChatRequest(user("What is the capital of France?"), max_tokens=8, temperature=0.0)
                return models, await client.chat(req)

        models, resp = run(go())
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert models == ["smollm2-135m"]
    assert resp.text.strip() and resp.model == "smollm2-135m"
    assert 1 <= resp.usage["completion_tokens"] <= 8 and resp.usage["prompt_tokens"] > 5
    assert resp.finish_reason in ("stop", "length")
    assert proc.returncode == 0, err
    assert "listening on" in err


def _one_shot_chunked_server(answers: list[bytes]):
    """A raw socket server answering each connection once, chunked, then closing it without notice."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    seen: list[int] = []

    def loop():
        for i, answer in enumerate(answers):
            conn, _ = sock.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = int(
                    next(
                        v
                        for k, v in (ln.split(b":", 1) for ln in head.split(b"\r\n")[1:])
                        if k.lower() == b"content-length"
                    )
                )
                while len(rest) < length:
                    rest += conn.recv(65536)
                seen.append(i)
                half = len(answer) // 2
                chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (answer[:half], answer[half:]))
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
        sock.close()

    threading.Thread(target=loop, daemon=True).start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}", seen


def test_stream_transport_chunked_and_stale_keepalive():
    answers = [
        json.dumps({"choices": [{"message": {"content": f"answer {i}"}, "finish_reason": "stop"}]}).encode()
        for i in range(2)
    ]
    url, seen = _one_shot_chunked_server(answers)

    async def go():
        async with OpenAIHTTPClient(url, "m", concurrency=1, retry=NO_RETRY) as client:
            # The second request first tries the kept-alive connection the server has closed.
            return [await client.chat(ChatRequest(user("x"))) for _ in range(2)]

    assert [r.text for r in run(go())] == ["answer 0", "answer 1"]
    assert seen == [0, 1]


def test_httpx_transport_for_https_and_its_error_mapping(serve):
    from mtr_hpc.llm.openai_http import _HttpxTransport, _Pool, _StreamTransport

    async def go():
        loop = asyncio.get_running_loop()
        assert isinstance(
            _Pool.open(loop, "https://api.example.com/v1", 8, {}, 1.0).transport, _HttpxTransport
        )
        assert isinstance(_Pool.open(loop, "http://127.0.0.1:1/v1", 8, {}, 1.0).transport, _StreamTransport)
        transport = _HttpxTransport(8, {}, 0.3)
        body = json.dumps(build_payload(ChatRequest(user("via httpx")), "echo")).encode()
        status, _, content = await transport.send("POST", f"{serve().url}/v1/chat/completions", body, slot=5)
        slow = serve(latency_ms=1000).url
        errors = []
        for url in (f"http://127.0.0.1:{free_port()}/v1/models", f"{slow}/v1/chat/completions"):
            with pytest.raises(LLMError) as err:
                await transport.send("POST", url, body)
            errors.append(err.value.kind)
        await transport.aclose()
        return status, json.loads(content), errors

    status, data, errors = run(go())
    assert status == 200 and data["choices"][0]["message"]["content"] == "via httpx"
    assert errors == ["connection", "timeout"]


def test_cli_serve_flags():
    from mtr_hpc.cli import build_parser

    args = build_parser().parse_args(
        ["serve", "--echo", "--port", "0", "--fail-rate", "0.25", "--latency-ms", "5"]
    )
    assert (args.backend, args.port, args.fail_rate, args.latency_ms) == ("echo", 0, 0.25, 5.0)
    assert build_parser().parse_args(["serve"]).backend == "transformers"
