"""The synthesis shard runner: shard assignment, the demo config, resume after kill -9, merge, bad input."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtr_hpc.config import load_config
from mtr_hpc.data import load_sample
from mtr_hpc.data.example import example_key
from mtr_hpc.data.splits import select_part
from mtr_hpc.errors import ConfigError, DataError
from mtr_hpc.synth import runner as runner_mod
from mtr_hpc.synth.merge import MergeError, merge_run
from mtr_hpc.synth.run_config import SynthRunConfig
from mtr_hpc.synth.runner import run_shards
from mtr_hpc.synth.shards import Journal, ShardSpec, shard_of, slurm_array_shard
from mtr_hpc.trace.io import trace_from_dict
from mtr_hpc.trace.validator import validate_trace

BENCHMARKS = ("hotpotqa", "musique", "2wiki", "bamboogle")


def demo_cfg(repo_root: Path, out: Path, *overrides: str) -> SynthRunConfig:
    return load_config(
        SynthRunConfig,
        repo_root / "configs" / "synth-demo.yaml",
        [f"out={out}", "progress=false", *overrides],
    )


def read_lines(path: Path) -> list[str]:
    data = path.read_text(encoding="utf-8")
    assert data == "" or data.endswith("\n"), f"{path} ends in a truncated line"
    return data.splitlines()


def canonical(lines: list[str]) -> list[str]:
    """Trace lines without `meta.timings` (wall clock, the one field that differs between runs), sorted."""
    out = []
    for line in lines:
        obj = json.loads(line)
        obj["meta"].pop("timings", None)
        out.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
    return sorted(out)


def run_cli(repo_root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mtr_hpc", *args],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "WANDB_MODE": "disabled"},
    )


def test_shard_assignment_is_a_deterministic_partition():
    keys = [example_key(b, ex.id) for b in BENCHMARKS for ex in load_sample(b)]
    for n in (1, 3, 4, 7):
        shards = [{k for k in keys if ShardSpec(i, n).owns(k)} for i in range(n)]
        assert set().union(*shards) == set(keys)
        assert sum(len(s) for s in shards) == len(keys)  # disjoint
        if n > 1:  # a hash, not everything in one shard
            assert min(len(s) for s in shards) > len(keys) / n / 2
    shuffled = random.Random(0).sample(keys, len(keys))
    assert {k: shard_of(k, 4) for k in shuffled} == {k: shard_of(k, 4) for k in keys}
    # Assignment is a function of the key alone: fresh interpreter, same shards.
    code = (
        "from mtr_hpc.synth.shards import shard_of; import sys; print([shard_of(k, 4) for k in sys.argv[1:]])"
    )
    out = subprocess.run([sys.executable, "-c", code, *keys[:20]], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [shard_of(k, 4) for k in keys[:20]]


def test_slurm_array_env_gives_zero_based_shard():
    env = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "4", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert slurm_array_shard(env) == (3, 4)
    assert slurm_array_shard({}) == (None, None)
    with pytest.raises(ConfigError):
        slurm_array_shard({"SLURM_ARRAY_TASK_ID": "x"})
    with pytest.raises(ConfigError):
        ShardSpec(4, 4)


@pytest.mark.slow
def test_demo_config_keeps_valid_traces_for_every_benchmark_and_rerun_is_noop(repo_root, tmp_path):
    out = tmp_path / "run"
    cfg = demo_cfg(repo_root, out, "num_shards=2")
    manifests = run_shards(cfg, [ShardSpec(0, 2), ShardSpec(1, 2)])
    assert all(not m.get("already_complete") for m in manifests)
    merged = merge_run(out)
    lines = read_lines(out / "merged" / "traces.jsonl")
    assert len(lines) == merged["kept"] == sum(m["kept"] for m in manifests)
    for benchmark in BENCHMARKS:
        assert merged["by_benchmark"][benchmark]["kept"] > 0, benchmark
        # What the kept traces observed, both shards' combined.
        fid = merged["fidelity"][benchmark]
        assert fid["episodes"] == merged["by_benchmark"][benchmark]["kept"] and 0 < fid["answer_seen"] <= 1
    for line in lines:
        trace = trace_from_dict(json.loads(line))
        assert validate_trace(trace) == [], trace.id
    ids = [json.loads(line)["id"] for line in lines]
    assert len(ids) == len(set(ids))
    # synth-demo.yaml synthesizes the train part: the held-out questions are evaluation's.
    assert merged["examples"] == sum(len(select_part(load_sample(b), "train")) for b in BENCHMARKS)
    assert merged["tools"]["unique_tools"] > 3
    check = run_cli(repo_root, "validate", str(out / "merged" / "traces.jsonl"), "--json")
    assert check.returncode == 0 and json.loads(check.stdout)["invalid"] == 0

    before = {p: p.read_bytes() for p in out.rglob("shard-*") if p.is_file()}
    again = run_shards(cfg, [ShardSpec(0, 2), ShardSpec(1, 2)])
    assert all(m["already_complete"] for m in again)
    assert {p: p.read_bytes() for p in out.rglob("shard-*") if p.is_file()} == before


def _journal_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_equals_uninterrupted_run(repo_root, tmp_path):
    overrides = ["limit=6", "example_delay_s=0.08"]
    ref = tmp_path / "ref"
    run_shards(demo_cfg(repo_root, ref, *overrides), [ShardSpec(0, 1)])
    merge_run(ref)

    out = tmp_path / "killed"
    journal = out / "shards" / "shard-00000-of-00001.partial"
    args = ["synth", "--config", "configs/synth-demo.yaml", "--out", str(out), "progress=false", *overrides]
    rng = random.Random(1234)
    kills = 0
    for _ in range(4):
        seen = _journal_lines(journal)
        proc = subprocess.Popen(
            [sys.executable, "-m", "mtr_hpc", *args], cwd=repo_root, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        # Wait until this run has recorded something, then kill it a random moment later.
        while proc.poll() is None and _journal_lines(journal) <= seen and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.25))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 3, "the run finished before it could be killed; raise example_delay_s"
    assert journal.exists() or (out / "shards" / "shard-00000-of-00001.manifest.json").exists()
    done = run_cli(repo_root, *args)
    assert done.returncode == 0, done.stderr
    merge_run(out)
    assert not journal.exists()

    for name in ("traces", "rejects"):
        got = read_lines(out / "merged" / f"{name}.jsonl")
        want = read_lines(ref / "merged" / f"{name}.jsonl")
        if name == "rejects":
            got = [json.dumps(json.loads(x)["trace"]) for x in got]
            want = [json.dumps(json.loads(x)["trace"]) for x in want]
        assert canonical(got) == canonical(want)
        ids = [json.loads(x)["id"] for x in got]
        assert len(ids) == len(set(ids))
    assert read_lines(out / "merged" / "tool_library.jsonl") == read_lines(
        ref / "merged" / "tool_library.jsonl"
    )
    assert json.loads((out / "manifest.json").read_text())["kept"] > 0


def test_journal_drops_a_torn_last_line_and_refuses_corruption(tmp_path):
    path = tmp_path / "j.partial"
    j = Journal(path)
    j.append({"key": "a", "v": 1})
    j.append({"key": "b", "v": 2})
    with open(path, "ab") as fh:
        fh.write(b'{"key": "c", "v"')
    j2 = Journal(path)
    assert [r["key"] for r in j2] == ["a", "b"] and j2.dropped_tail > 0
    assert path.read_bytes().endswith(b"\n") and path.read_bytes().count(b"\n") == 2
    j2.append({"key": "c", "v": 3})
    assert [r["key"] for r in Journal(path)] == ["a", "b", "c"]
    path.write_bytes(b'{"key": "a"}\nnot json\n{"key": "b"}\n')
    with pytest.raises(DataError, match="line 2"):
        Journal(path)


def test_malformed_benchmark_file_exits_2_and_writes_nothing(repo_root, tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = json.dumps({"id": "q1", "question": "Who?", "golden_answers": ["x"]})
    bad.write_text(good + "\n{not json\n")
    out = tmp_path / "run"
    args = ["synth", "--config", "configs/synth-demo.yaml", "--out", str(out)]
    res = run_cli(repo_root, *args, "sources=[{benchmark: bamboogle, part: all, path: " + str(bad) + "}]")
    assert res.returncode == 2
    assert str(bad) in res.stderr and "line 2" in res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists()
    res = run_cli(
        repo_root,
        *args,
        "skip_bad=true",
        "progress=false",
        f"sources=[{{benchmark: bamboogle, part: all, path: {bad}}}]",
    )
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "shards" / "shard-00000-of-00001.manifest.json").read_text())
    assert manifest["input"]["skipped_records"] == 1 and manifest["examples"] == 1


def test_an_example_that_breaks_the_agents_is_a_counted_reject(repo_root, tmp_path, monkeypatch):
    victim = load_sample("musique")[1].id
    real = runner_mod.asynthesize_example

    def flaky(example, cfg, agents):
        if example.id == victim:
            raise RuntimeError("agents broke")
        return real(example, cfg, agents)

    monkeypatch.setattr(runner_mod, "asynthesize_example", flaky)
    out = tmp_path / "run"
    cfg = demo_cfg(
        repo_root,
        out,
        "limit=4",
        "sources=[{benchmark: musique, part: train}, {benchmark: 2wiki, part: train}]",
    )
    (manifest,) = run_shards(cfg, [ShardSpec(0, 1)])
    assert manifest["rejected_by_reason"] == {"agent_error": 1}
    # `limit` takes the first 4 of each file, then their train part: 4 MuSiQue and 3 2Wiki questions.
    assert (manifest["examples"], manifest["kept"]) == (7, 6)
    (reject,) = [json.loads(x) for x in read_lines(out / "rejects" / "shard-00000-of-00001.jsonl")]
    assert reject["example_id"] == victim and "agents broke" in reject["trace"]["meta"]["error"]


def test_merge_refuses_unfinished_shards(repo_root, tmp_path):
    out = tmp_path / "run"
    run_shards(demo_cfg(repo_root, out, "limit=2", "num_shards=3"), [ShardSpec(1, 3)])
    with pytest.raises(MergeError, match="2 of 3 shards"):
        merge_run(out)
    res = run_cli(repo_root, "synth", "merge", "--out", str(out))
    assert res.returncode == 2 and "not finished" in res.stderr
    with pytest.raises(MergeError):
        merge_run(tmp_path / "missing")


class CountingEcho:
    """The echo backend with a delay, recording the most requests it had in flight at once."""

    name = "counting-echo"
    supports_json_schema = True

    def __init__(self, latency_s: float):
        from mtr_hpc.llm.fake import EchoClient

        self.inner = EchoClient(latency_s=latency_s)
        self.in_flight = 0
        self.max_in_flight = 0

    async def chat(self, req):
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self.inner.chat(req)
        finally:
            self.in_flight -= 1

    async def chat_many(self, reqs):
        return [await self.chat(r) for r in reqs]


def test_llm_backend_runs_examples_concurrently_with_the_same_results(repo_root, tmp_path):
    llm_keys = ["agents.toolactor.backend=llm", "llm.backend=echo", "llm.model=echo", "limit=3"]
    results = {}
    for concurrency in (1, 8):
        out = tmp_path / f"c{concurrency}"
        client = CountingEcho(0.01)
        cfg = demo_cfg(repo_root, out, *llm_keys, f"concurrency={concurrency}")
        (manifest,) = run_shards(cfg, [ShardSpec(0, 1)], llm=client)
        assert manifest["examples"] == sum(len(select_part(load_sample(b)[:3], "train")) for b in BENCHMARKS)
        assert client.max_in_flight == (1 if concurrency == 1 else 8)
        lines = read_lines(out / "traces" / "shard-00000-of-00001.jsonl")
        rejects = [json.loads(x) for x in read_lines(out / "rejects" / "shard-00000-of-00001.jsonl")]
        # Echoed observations are schema-valid but hold no answer: rejects are filter verdicts, not errors.
        assert {r["reason"] for r in rejects} <= {"ungrounded", "wrong_answer"}
        for rec in [json.loads(x) for x in lines] + [r["trace"] for r in rejects]:
            assert validate_trace(trace_from_dict(rec)) == [], rec["id"]
        results[concurrency] = canonical(lines + [json.dumps(r["trace"]) for r in rejects])
    assert results[1] == results[8]
