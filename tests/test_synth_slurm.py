"""Synthesis on a real local Slurm cluster: the sbatch array job and the submitit launcher, vs a local run."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mtr_hpc.config import load_config
from mtr_hpc.errors import ConfigError
from mtr_hpc.launch.submitit_launch import LaunchOptions, launch, out_dir_of
from mtr_hpc.stages import STAGES, Stage, get_stage
from mtr_hpc.synth.merge import merge_run
from mtr_hpc.synth.run_config import SynthRunConfig
from mtr_hpc.synth.runner import run_shards
from mtr_hpc.synth.shards import ShardSpec
from mtr_hpc.trace.io import trace_from_dict
from mtr_hpc.trace.validator import validate_trace

# Multi-second tests (real clusters, several ranks or real models): out of `-m "not slow"`.
pytestmark = pytest.mark.slow

LIMIT = "limit=3"
SHARDS = 4


def canonical_traces(run_dir: Path) -> list[str]:
    """Merged trace lines without `meta.timings` (wall clock), sorted; each one checked valid first."""
    text = (run_dir / "merged" / "traces.jsonl").read_text(encoding="utf-8")
    assert text.endswith("\n")
    out = []
    for line in text.splitlines():
        obj = json.loads(line)
        assert validate_trace(trace_from_dict(obj)) == [], obj["id"]
        obj["meta"].pop("timings", None)
        out.append(json.dumps(obj, separators=(",", ":")))
    assert len(out) == len(set(out))
    return sorted(out)


@pytest.fixture(scope="module")
def local_reference(repo_root, tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("local") / "run"
    cfg = load_config(
        SynthRunConfig,
        repo_root / "configs" / "synth-demo.yaml",
        [f"out={out}", "progress=false", LIMIT, f"num_shards={SHARDS}"],
    )
    run_shards(cfg, [ShardSpec(i, SHARDS) for i in range(SHARDS)])
    merged = merge_run(out)
    assert {b for b, row in merged["by_benchmark"].items() if row["kept"]} == {
        "hotpotqa",
        "musique",
        "2wiki",
        "bamboogle",
    }
    return canonical_traces(out)


def test_sbatch_array_job_then_merge_equals_local_run(slurm_cluster, repo_root, tmp_path, local_reference):
    out = tmp_path / "run"
    logs = tmp_path / "logs"
    logs.mkdir()
    job = slurm_cluster.sbatch(
        [
            f"--array=0-{SHARDS - 1}",
            "--cpus-per-task=1",  # grounded synthesis needs one core
            f"--output={logs}/synth-%A_%a.out",
            str(repo_root / "slurm" / "synth.sbatch"),
            "configs/synth-demo.yaml",
            str(out),
            LIMIT,
        ],
        cwd=repo_root,
    )
    state = slurm_cluster.wait(job, timeout=180)
    shown = "\n".join(p.read_text(errors="replace")[-2000:] for p in sorted(logs.iterdir()))
    assert state == "COMPLETED", shown
    assert len(list((out / "shards").glob("*.manifest.json"))) == SHARDS, shown
    res = subprocess.run(
        [sys.executable, "-m", "mtr_hpc", "synth", "merge", "--out", str(out), "--json"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["num_shards"] == SHARDS
    assert canonical_traces(out) == local_reference


def test_submitit_slurm_executor_then_merge_equals_local_run(
    slurm_cluster, repo_root, tmp_path, local_reference
):
    out = tmp_path / "run"
    res = subprocess.run(
        [
            sys.executable, "-m", "mtr_hpc", "launch", "synth", LIMIT, "progress=false",
            "--executor", "slurm", "--config", "configs/synth-demo.yaml", "--out", str(out),
            "--num-shards", str(SHARDS), "--time-min", "10", "--merge", "--json",
        ],
        cwd=repo_root,
        env={**slurm_cluster.env, "WANDB_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert len(summary["job_ids"]) == SHARDS and all("_" in j for j in summary["job_ids"])  # one array
    assert sorted(m["shard_index"] for r in summary["results"] for m in r) == list(range(SHARDS))
    assert summary["merged"]["num_shards"] == SHARDS
    assert canonical_traces(out) == local_reference


def test_local_executor_matches_and_registry_is_generic(repo_root, tmp_path, local_reference, monkeypatch):
    monkeypatch.chdir(repo_root)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    out = tmp_path / "run"
    opts = LaunchOptions(executor="local", num_tasks=SHARDS, merge=True, time_min=10)
    result = launch("synth", "configs/synth-demo.yaml", [f"out={out}", LIMIT, "progress=false"], opts)
    assert result.merged["num_shards"] == SHARDS and result.out == str(out)
    assert canonical_traces(out) == local_reference

    monkeypatch.setitem(STAGES, "echo-stage", Stage("echo-stage", "os.path:join", "os.path:join"))
    assert get_stage("echo-stage").array is False
    with pytest.raises(ConfigError, match="runs as one task"):
        launch("echo-stage", None, ["out=x"], LaunchOptions(executor="local", num_tasks=2))
    with pytest.raises(ConfigError, match="unknown stage"):
        get_stage("nope")
    with pytest.raises(ConfigError, match="out"):
        out_dir_of(None, [], "synth")
    assert out_dir_of(None, ["synth.out=abc"], "synth") == "abc"
    assert os.path.isdir(out / "submitit")


def server_job_env(cluster, **extra: str) -> dict[str, str]:
    """The cluster's client environment for a job that starts a server: without the variables that would
    change how synth.sbatch starts it (a developer's MTR_VLLM_PORT, a GPU list, vLLM settings that other
    tests of the session put in os.environ before the cluster copied it), plus `extra`."""
    drop = ("VLLM_", "MTR_VLLM_", "MTR_LLM_MODEL", "MTR_CONTAINER_", "CUDA_VISIBLE_DEVICES")
    env = {k: v for k, v in cluster.env.items() if not k.startswith(drop)}
    return {**env, **extra}


FAKE_VLLM = """#!{python}
# Stands in for `vllm serve MODEL --served-model-name NAME --host H --port P ...`: the echo backend of
# `mtr serve` on that port.
import json, os, sys
args = sys.argv[1:]
assert args[0] == "serve", args
port = args[args.index("--port") + 1]
with open(os.environ["FAKE_VLLM_LOG"], "a") as log:
    log.write(json.dumps({{"pid": os.getpid(), "args": args}}) + "\\n")
os.execv(sys.executable, [sys.executable, "-m", "mtr_hpc", "serve", "--backend", "echo", "--port", port])
"""


def test_sbatch_llm_backend_starts_waits_for_and_stops_the_server(slurm_cluster, repo_root, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "vllm"
    fake.write_text(FAKE_VLLM.format(python=sys.executable))
    fake.chmod(0o755)
    served = tmp_path / "served.log"
    out = tmp_path / "run"
    env = server_job_env(
        slurm_cluster,
        PATH=f"{bin_dir}:{slurm_cluster.env['PATH']}",
        FAKE_VLLM_LOG=str(served),
        MTR_VLLM_SERVE="vllm serve",  # the fake on PATH, not the vLLM the checkout's Python imports
        MTR_VLLM_PORT=str(20000 + os.getpid() % 10000),
    )
    job = subprocess.run(
        [
            "sbatch", "--parsable", "--array=0-0", "--cpus-per-task=1", f"--output={tmp_path}/job-%A_%a.out",
            str(repo_root / "slurm" / "synth.sbatch"), "configs/synth-demo.yaml", str(out),
            "limit=1", "agents.toolactor.backend=llm", "llm.model=fake-model",
        ],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=30, check=True,
    ).stdout.strip()  # fmt: skip
    state = slurm_cluster.wait(job, timeout=180)
    log = "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("job-*.out"))
    assert state == "COMPLETED", log
    assert "ready on port" in log
    started = json.loads(served.read_text())
    pid = started["pid"]
    # No GPU on this node: CPU mode, one rank, eager; the model first (`vllm serve MODEL`), served by name.
    assert started["args"] == [
        "serve", "fake-model", "--served-model-name", "fake-model", "--host", "127.0.0.1",
        "--port", env["MTR_VLLM_PORT"], "--tensor-parallel-size", "1", "--enforce-eager",
    ]  # fmt: skip
    assert "starting the vLLM server (cpu): vllm serve fake-model" in log
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    manifest = json.loads((out / "shards" / "shard-00000-of-00001.manifest.json").read_text())
    assert manifest["examples"] == 4
    assert manifest["config"]["llm"]["model"] == "fake-model"
    traces = (out / "traces" / "shard-00000-of-00001.jsonl").read_text().splitlines()
    rejects = (out / "rejects" / "shard-00000-of-00001.jsonl").read_text().splitlines()
    metas = [json.loads(x)["meta"] for x in traces] + [json.loads(x)["trace"]["meta"] for x in rejects]
    assert {m["agents"]["toolactor"] for m in metas} == {"llm"} and {m["model"] for m in metas} == {
        "fake-model"
    }


# The smallest real synthesis on vLLM: one example of each of the 4 sources, 2 per shard; 2 turns of
# at most 32 tokens. What the 135M model writes varies; the test checks the plumbing, not its quality.
REAL_OVERRIDES = [
    "limit=1",
    "concurrency=2",
    "agents.autoagent.backend=llm",
    "agents.toolactor.backend=llm",
    "agents.autoagent.max_turns=2",
    "agents.filter.max_turns=2",
    "agents.autoagent.max_tokens=32",
    "agents.toolactor.max_tokens=32",
    "llm.model=smollm2-135m",
    "llm.timeout_s=300",
]
SERVER_COMMAND = re.compile(
    r"starting the vLLM server \(cpu\): \S+ -m vllm\.entrypoints\."
    r"(openai\.api_server --model|cli\.main serve) (?P<path>\S+) --served-model-name smollm2-135m .*"
    r"--tensor-parallel-size 1 --enforce-eager"
)
READY = re.compile(
    r"vllm serve smollm2-135m ready on port (?P<port>\d+) \(tp=1, cpu\) after \d+ s: (?P<models>.*)"
)


def test_sbatch_llm_backend_on_the_real_vllm_server(slurm_cluster, repo_root, tmp_path):
    pytest.importorskip("vllm")
    from mtr_hpc.models.registry import resolve_model

    model_dir = resolve_model("smollm2-135m")  # converted here once, not by both tasks at once
    out = tmp_path / "run"
    logs = tmp_path / "logs"
    logs.mkdir()
    base_port = 20000 + (os.getpid() % 5000) * 2
    env = server_job_env(slurm_cluster, MTR_VLLM_BASE_PORT=str(base_port), MTR_VLLM_TIMEOUT="600")
    job = subprocess.run(
        [
            "sbatch", "--parsable", "--array=0-1", "--cpus-per-task=2", f"--output={logs}/synth-%A_%a.out",
            str(repo_root / "slurm" / "synth.sbatch"), "configs/synth-demo.yaml", str(out), *REAL_OVERRIDES,
        ],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=30, check=True,
    ).stdout.strip()  # fmt: skip
    state = slurm_cluster.wait(job, timeout=1200)
    texts = [p.read_text(errors="replace") for p in sorted(logs.iterdir())]
    shown = "\n".join(t[-3000:] for t in texts)
    assert state == "COMPLETED", shown
    assert len(texts) == 2, shown
    ports = set()
    for text in texts:
        # The real vLLM OpenAI server, on the model's Hugging Face directory, in CPU mode...
        started = SERVER_COMMAND.search(text)
        assert started and started["path"] == model_dir, text[-3000:]
        # ... that answered GET /v1/models as vLLM does, under the configured name ...
        ready = READY.search(text)
        assert ready, text[-3000:]
        (listed,) = json.loads(ready["models"])["data"]
        assert listed["id"] == "smollm2-135m" and listed["owned_by"] == "vllm", listed
        ports.add(int(ready["port"]))
        # ... and was stopped when the task ended.
        assert "mtr-synth: the vLLM server stopped" in text, text[-3000:]
    assert ports == {base_port, base_port + 1}
    for port in ports:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()

    res = subprocess.run(
        [sys.executable, "-m", "mtr_hpc", "synth", "merge", "--out", str(out), "--json"],
        cwd=repo_root, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    merged = json.loads(res.stdout)
    assert merged["num_shards"] == 2 and merged["kept"] + merged["rejected"] == 4, merged
    kept = (out / "merged" / "traces.jsonl").read_text().splitlines()
    rejects = [json.loads(line) for line in (out / "merged" / "rejects.jsonl").read_text().splitlines()]
    assert len(kept) == merged["kept"] and len(rejects) == merged["rejected"]
    traces = [json.loads(line) for line in kept] + [r["trace"] for r in rejects]
    for obj in traces:
        trace = trace_from_dict(obj)  # every record parses
        assert trace.meta["model"] == "smollm2-135m"
        assert trace.meta["agents"]["autoagent"] == trace.meta["agents"]["toolactor"] == "llm"
    # The server answered every request (no client error or timeout), and the model wrote the turns.
    assert not {r["reason"] for r in rejects} & {"llm_error", "timeout"}, [r["reason"] for r in rejects]
    assert all(any(m["role"] == "assistant" and m.get("content") for m in t["messages"]) for t in traces)

    # The validator over everything the model produced: kept traces passed the filter's validation, so
    # they are all valid; the rejected ones are counted, whatever the 135M model got wrong.
    everything = tmp_path / "all.jsonl"
    everything.write_text("".join(json.dumps(t) + "\n" for t in traces))
    reports = {}
    for name, path in (("kept", out / "merged" / "traces.jsonl"), ("all", everything)):
        res = subprocess.run(
            [sys.executable, "-m", "mtr_hpc", "validate", str(path), "--json"],
            cwd=repo_root, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        reports[name] = json.loads(res.stdout)
        assert res.returncode == (0 if reports[name]["invalid"] == 0 else 1), res.stderr
    assert reports["kept"]["n"] == reports["kept"]["valid"] == merged["kept"], reports
    assert reports["all"]["n"] == 4 and reports["all"]["valid"] >= merged["kept"], reports
    assert "bad_json" not in reports["all"]["errors"], reports
