"""Throughput of the OpenAI-compatible HTTP client at 1 and at 64 requests in flight.

Starts `mtr serve --backend echo --latency-ms 50` on a free local port, sends the same number of chat
requests with the client's concurrency set to 1 and then to 64, and prints requests/s for each and
their ratio. With a fixed 50 ms per request the serial rate is bounded by 20 req/s, so the ratio shows
how much of the 64-way overlap the client and server actually deliver.

    .venv/bin/python tools/bench_llm_client.py [--requests 320] [--latency-ms 50] [--concurrency 64] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtr_hpc.llm.openai_http import OpenAIHTTPClient, RetryPolicy  # noqa: E402
from mtr_hpc.llm.protocol import ChatRequest, LLMError  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, latency_ms: float) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mtr_hpc", "serve", "--backend", "echo", "--port", str(port)]
    cmd += ["--latency-ms", str(latency_ms)]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )
    return subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.DEVNULL)


async def measure(url: str, concurrency: int, n: int) -> dict:
    reqs = [ChatRequest([{"role": "user", "content": f"request {i}"}], max_tokens=16) for i in range(n)]
    async with OpenAIHTTPClient(
        url, "echo", concurrency=concurrency, retry=RetryPolicy(max_retries=0)
    ) as client:
        await client.wait_healthy(30)
        await client.chat_many(reqs[:concurrency])  # open the connections before timing
        t0 = time.perf_counter()
        results = await client.chat_many(reqs)
        wall = time.perf_counter() - t0
    errors = sum(isinstance(r, LLMError) for r in results)
    return {
        "concurrency": concurrency,
        "requests": n,
        "errors": errors,
        "wall_s": wall,
        "req_per_s": n / wall,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=320, help="requests per measurement")
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)

    port = free_port()
    server = start_server(port, args.latency_ms)
    try:
        url = f"http://127.0.0.1:{port}"
        serial = asyncio.run(measure(url, 1, args.requests))
        parallel = asyncio.run(measure(url, args.concurrency, args.requests))
    finally:
        server.terminate()
        server.wait(timeout=10)
    ratio = parallel["req_per_s"] / serial["req_per_s"]
    report = {"latency_ms": args.latency_ms, "serial": serial, "parallel": parallel, "speedup": ratio}
    if args.json:
        print(json.dumps(report))
    else:
        for row in (serial, parallel):
            print(
                f"{row['concurrency']:>3} in flight: {row['requests']} requests in {row['wall_s']:.2f} s = "
                f"{row['req_per_s']:.1f} req/s ({row['errors']} errors)"
            )
        print(f"speedup {args.concurrency} vs 1 in flight: {ratio:.1f}x")
    return 0 if serial["errors"] == parallel["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
