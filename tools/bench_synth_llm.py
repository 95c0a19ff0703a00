"""Throughput of the shard runner with an `llm` backend: examples/s with 1 vs N examples in flight.

Starts `mtr serve --backend echo --latency-ms L` (an OpenAI-compatible server that waits L ms per
completion and answers a JSON instance of the requested schema) and runs `mtr_hpc.synth.runner` on the
shipped samples with the ToolActor on the `llm` backend (every tool observation is one HTTP completion,
validated against the tool's `x-returns`), the ToolMaker on templates and the AutoAgent grounded. The echo
server cannot write agent turns (it repeats the question), so the AutoAgent stays grounded: the traces
are complete and valid, and rejected as `ungrounded` where the echoed observations do not hold the
answer. What is measured is the runner's concurrency path: examples through `asynthesize_example`
under a semaphore on one event loop, sharing one HTTP client.

    python tools/bench_synth_llm.py [--latency-ms 50] [--concurrency 64] [--serial-examples 12]

Prints one JSON object: examples/s and completions/s at concurrency 1 and N, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from mtr_hpc.config import load_config
from mtr_hpc.synth.run_config import SynthRunConfig
from mtr_hpc.synth.runner import run_shards
from mtr_hpc.synth.shards import ShardSpec

REPO = Path(__file__).resolve().parents[1]


def start_server(latency_ms: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtr_hpc", "serve", "--backend", "echo", "--port", "0",
         "--latency-ms", str(latency_ms)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        found = re.search(r"listening on (\S+)", line)
        if found:
            return proc, found.group(1).rstrip("/")
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("mtr serve did not start")


def completions(url: str) -> int:
    with urllib.request.urlopen(f"{url}/stats", timeout=10) as resp:
        stats = json.load(resp)
    return int(stats.get("completions", stats.get("requests", 0)))


def measure(url: str, concurrency: int, limit: int, work: Path) -> dict:
    out = work / f"c{concurrency}"
    cfg = load_config(
        SynthRunConfig,
        REPO / "configs" / "synth-demo.yaml",
        [
            f"out={out}", "progress=false", f"limit={limit}", f"concurrency={concurrency}",
            "agents.toolactor.backend=llm", "llm.backend=openai", f"llm.base_url={url}",
            "llm.model=echo", f"llm.max_in_flight={max(concurrency, 1)}",
        ],
    )  # fmt: skip
    before = completions(url)
    t0 = time.perf_counter()
    (manifest,) = run_shards(cfg, [ShardSpec(0, 1)])
    dt = time.perf_counter() - t0
    n_req = completions(url) - before
    return {
        "concurrency": concurrency,
        "examples": manifest["examples"],
        "kept": manifest["kept"],
        "rejected_by_reason": manifest["rejected_by_reason"],
        "completions": n_req,
        "seconds": round(dt, 3),
        "examples_per_s": round(manifest["examples"] / dt, 2),
        "completions_per_s": round(n_req / dt, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--serial-examples", type=int, default=3, help="examples per benchmark at concurrency 1")
    ap.add_argument("--concurrent-examples", type=int, default=0, help="per benchmark at N (0: all)")
    args = ap.parse_args()
    proc, url = start_server(args.latency_ms)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-synth-llm-") as tmp:
            serial = measure(url, 1, args.serial_examples, Path(tmp))
            concurrent = measure(url, args.concurrency, args.concurrent_examples, Path(tmp))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    ratio = concurrent["examples_per_s"] / serial["examples_per_s"]
    print(
        json.dumps(
            {
                "latency_ms": args.latency_ms,
                "serial": serial,
                "concurrent": concurrent,
                "ratio": round(ratio, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
