"""The shard runner of `mtr synth`: the examples of one shard through the agents, resumable at any kill.

Per shard: load every source (before anything is written, so bad input leaves no run directory), keep
the examples the shard owns (`shards.ShardSpec`), skip those the journal already holds, synthesize the
rest and append each result to the journal (`shards.Journal`). When all are done, the final shard files
are written atomically from the journal, in the shard's example order, and the shard manifest last (it
marks completion; a rerun of a finished shard does nothing).

Traces do not depend on how a run was sharded or interrupted: the distractor pool of a benchmark is
built from all of its examples, not the shard's, and on resume the tool library is rebuilt from the
journal (each record names the library key and origin of every tool its trace declares), so an example
synthesized after a restart sees the same library as it would have in an uninterrupted run. Only
`meta.timings` (wall clock) differs between two runs. An example whose agents raise is a reject with
reason `agent_error`; the shard goes on.

`llm` backends: examples run concurrently (`concurrency`, a semaphore) on one event loop sharing one
client; grounded backends never suspend and run one by one without an event loop. With an `llm` ToolMaker
and `concurrency > 1`, which example first writes a new relation's interface depends on completion
order, so interfaces (not the resume guarantee) may differ between two runs. The replay cache is made
durable once per example (`shards.ShardCache`), and journal fsyncs run off the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..config import to_dict
from ..data import QAExample, load_benchmark, sample_path
from ..data.example import example_key
from ..data.splits import select_part
from ..io import atomic_write, atomic_write_json, read_json
from ..rundir import prepare_run_dir, versions
from ..sim.evidence import build_kb
from ..sim.retrieval import DistractorPool
from ..sim.tool_library import ToolLibrary
from ..trace.model import Trace
from .autoagent import SYSTEM_PROMPT, TraceBuilder
from .config import SynthConfig
from .filtering import SynthAgents, Verdict, asynthesize_example
from .merge import dumps_line, summarize
from .run_config import IDENTITY_IGNORE, SAMPLE_SOURCE, SynthRunConfig
from .shards import Journal, ShardCache, ShardPaths, ShardSpec


@dataclasses.dataclass
class Inputs:
    """Every example of the run in source order (first occurrence of a key wins), and the pools."""

    examples: list[tuple[str, QAExample]]
    pools: dict[str, DistractorPool]
    skipped_records: int = 0
    duplicate_examples: int = 0


def load_inputs(cfg: SynthRunConfig) -> Inputs:
    seen: set[str] = set()
    out = Inputs([], {})
    by_benchmark: dict[str, list[QAExample]] = {}
    for src in cfg.sources:
        path = sample_path(src.benchmark) if src.path == SAMPLE_SOURCE else src.path
        result = load_benchmark(
            src.benchmark, path, skip_bad=cfg.skip_bad, split=src.split, limit=cfg.source_limit(src)
        )
        out.skipped_records += result.n_skipped
        for ex in select_part(result.examples, src.part, key="sources.part"):
            key = example_key(ex.benchmark, ex.id)
            if key in seen:
                out.duplicate_examples += 1
                continue
            seen.add(key)
            out.examples.append((key, ex))
            by_benchmark.setdefault(ex.benchmark, []).append(ex)
    for benchmark, exs in by_benchmark.items():
        out.pools[benchmark] = DistractorPool.from_kbs([build_kb(e) for e in exs])
    return out


def make_llm(cfg: SynthRunConfig) -> Any:
    """The one client of a run with `llm` backends (None for grounded runs)."""
    return cfg.llm.client(cfg.agents.model) if cfg.uses_llm else None


def _failed(ex: QAExample, cfg: SynthRunConfig, exc: Exception) -> tuple[Trace, Verdict]:
    """The reject of an example whose agents raised: the question alone, the error in `meta`."""
    builder = TraceBuilder(SYSTEM_PROMPT, ex.question)
    meta = {
        "stop_reason": "agent_error",
        "error": f"{type(exc).__name__}: {exc}"[:500],
        "seed": cfg.agents.seed,
        "validation": {"keep": False, "reason": "agent_error"},
    }
    trace_id = f"{ex.benchmark}:{ex.id}:s{cfg.agents.seed}"
    trace = Trace(trace_id, ex.id, ex.benchmark, [], builder.messages, None, meta)
    return trace, Verdict(False, "agent_error")


class ShardRunner:
    """One shard of a run: `run()` finishes it (resuming its journal) and returns its manifest."""

    def __init__(self, cfg: SynthRunConfig, shard: ShardSpec, inputs: Inputs, llm: Any = None):
        self.cfg = cfg
        self.shard = shard
        self.run_dir = Path(cfg.out)
        self.paths = ShardPaths(self.run_dir, shard.name)
        self.keys = [(k, ex) for k, ex in inputs.examples if shard.owns(k)]
        self.inputs = inputs
        self.llm = llm
        self.journal: Journal | None = None
        self.library = ToolLibrary()
        self.agents: dict[str, SynthAgents] = {}
        self.cache: ShardCache | None = None
        self.agent_cfgs: dict[str, SynthConfig] = {}

    # -- setup ---------------------------------------------------------------------------------
    def _open(self) -> None:
        self.journal = Journal(self.paths.journal)
        for rec in self.journal:
            self._replay_library(self.library, rec)
        self.cache = cache = ShardCache(self.paths.cache)
        for benchmark, pool in self.inputs.pools.items():
            # Trace meta names the served model even when only `llm.model` was configured.
            model = self.cfg.agents.model or self.cfg.llm.model
            self.agent_cfgs[benchmark] = dataclasses.replace(
                self.cfg.agents, benchmark=benchmark, model=model
            )
            self.agents[benchmark] = SynthAgents.build(
                self.agent_cfgs[benchmark], llm=self.llm, library=self.library, cache=cache, pool=pool
            )

    @staticmethod
    def _replay_library(library: ToolLibrary, rec: dict[str, Any]) -> None:
        for tool, (key, origin) in zip(rec["trace"]["tools"], rec.get("library", []), strict=False):
            if key is not None:
                library.add(key, tool, origin, count=1)

    def _record(self, key: str, trace: Trace, verdict: Verdict) -> dict[str, Any]:
        key_of = {e.name: k for k, e in self.library.entries.items()}
        # Aligned with trace.tools; a tool the library does not know (None) is not replayed.
        lib = []
        for tool in trace.tools:
            k = key_of.get(tool.get("function", {}).get("name", ""))
            lib.append([k, self.library.entries[k].origin if k else None])
        return {
            "key": key,
            "keep": verdict.keep,
            "reason": verdict.reason,
            "scores": {k: v for k, v in verdict.scores.items() if k != "issues"},
            "trace": trace.to_dict(),
            "library": lib,
        }

    # -- work ----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        if self.paths.manifest.exists():
            self.paths.journal.unlink(missing_ok=True)
            return {**read_json(self.paths.manifest), "already_complete": True}
        t0 = time.perf_counter()
        self._open()
        todo = [(k, ex) for k, ex in self.keys if k not in self.journal]
        progress = _Progress(self, len(self.keys), len(self.journal), len(todo))
        try:
            if self.llm is not None:
                asyncio.run(self._run_async(todo, progress))
            else:
                for key, ex in todo:
                    self._finish(key, ex, *self._synth_sync(ex), progress)
        finally:
            progress.close()
            self.cache.close()
        return self._finalize(time.perf_counter() - t0, len(todo))

    def _synth_sync(self, ex: QAExample) -> tuple[Trace, Verdict]:
        from ..sim.drive import drive

        try:
            return drive(asynthesize_example(ex, self.agent_cfgs[ex.benchmark], self.agents[ex.benchmark]))
        except Exception as exc:  # noqa: BLE001 - one bad example must not stop the shard
            return _failed(ex, self.cfg, exc)

    async def _run_async(self, todo: list[tuple[str, QAExample]], progress: _Progress) -> None:
        sem = asyncio.Semaphore(self.cfg.concurrency)

        async def one(key: str, ex: QAExample) -> None:
            async with sem:
                try:
                    trace, verdict = await asynthesize_example(
                        ex, self.agent_cfgs[ex.benchmark], self.agents[ex.benchmark]
                    )
                except Exception as exc:  # noqa: BLE001
                    trace, verdict = _failed(ex, self.cfg, exc)
                if self.cfg.example_delay_s:
                    await asyncio.sleep(self.cfg.example_delay_s)
                # fsyncs off the event loop: the other examples' requests go on meanwhile.
                record = self._record(key, trace, verdict)
                await asyncio.to_thread(self._persist, record)
                progress.update(ex.benchmark, verdict)

        try:
            await asyncio.gather(*(one(k, ex) for k, ex in todo))
        finally:
            close = getattr(self.llm, "aclose", None)
            if close is not None:
                await close()

    def _finish(self, key: str, ex: QAExample, trace: Trace, verdict: Verdict, progress: _Progress) -> None:
        if self.cfg.example_delay_s:
            time.sleep(self.cfg.example_delay_s)
        self._persist(self._record(key, trace, verdict))
        progress.update(ex.benchmark, verdict)

    def _persist(self, record: dict[str, Any]) -> None:
        # Observations first: a journal line never refers to a cache entry that could be lost.
        self.cache.sync()
        self.journal.append(record)

    # -- completion ----------------------------------------------------------------------------
    def _finalize(self, wall_s: float, n_new: int) -> dict[str, Any]:
        order = {k: i for i, (k, _) in enumerate(self.keys)}
        records = sorted((r for r in self.journal if r["key"] in order), key=lambda r: order[r["key"]])
        with atomic_write(self.paths.traces) as fh:
            fh.writelines(dumps_line(r["trace"]) for r in records if r["keep"])
        with atomic_write(self.paths.rejects) as fh:
            fh.writelines(dumps_line(_reject_line(r)) for r in records if not r["keep"])
        library = ToolLibrary()
        for rec in records:
            self._replay_library(library, rec)
        library.save(self.paths.library)
        synth_s = sum((r["trace"]["meta"].get("timings") or {}).get("total_s") or 0.0 for r in records)
        manifest = {
            "stage": "synth-shard",
            "shard": self.shard.name,
            "shard_index": self.shard.index,
            "num_shards": self.shard.count,
            **summarize((r["trace"]["benchmark"], r["keep"], r["reason"]) for r in records),
            "tools": library.report(top=10),
            "fidelity": self._fidelity(records),
            "timings": {"wall_s": round(wall_s, 3), "synth_s": round(synth_s, 3), "new_examples": n_new},
            "input": {
                "skipped_records": self.inputs.skipped_records,
                "duplicate_examples": self.inputs.duplicate_examples,
            },
            "config": to_dict(self.cfg),
            "versions": versions(),
        }
        atomic_write_json(self.paths.manifest, manifest)
        self.paths.journal.unlink(missing_ok=True)
        return manifest

    def _fidelity(self, records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
        """What the kept traces observed, per benchmark (`sim.fidelity`; tokens are words here): the
        same statistics eval reports for its environments, to compare training with test."""
        from ..sim.evidence import build_kb
        from ..sim.fidelity import observation_stats, pool

        examples = dict(self.keys)
        by_bench: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            ex = examples.get(r["key"])
            if r["keep"] and ex is not None:
                stats = observation_stats(
                    r["trace"]["messages"], list(ex.answers), build_kb(ex).gold_titles()
                )
                by_bench.setdefault(ex.benchmark, []).append(stats)
        return {b: pool(s) for b, s in sorted(by_bench.items())}


def _reject_line(rec: dict[str, Any]) -> dict[str, Any]:
    trace = rec["trace"]
    return {
        "example_id": trace["example_id"],
        "benchmark": trace["benchmark"],
        "reason": rec["reason"],
        "scores": rec.get("scores", {}),
        "trace": trace,
    }


class _Progress:
    """tqdm bar per shard and `synth/*` metrics every `log_every` examples (metrics.jsonl + W&B)."""

    def __init__(self, runner: ShardRunner, total: int, done: int, todo: int):
        from tqdm import tqdm

        from ..tracking import MetricsLogger

        cfg = runner.cfg
        self.log_every = cfg.log_every
        self.done = done
        self.new = 0
        self.counts = summarize((r["trace"]["benchmark"], r["keep"], r["reason"]) for r in runner.journal)
        wandb_cfg = dataclasses.replace(
            cfg.wandb,
            group=cfg.wandb.group or runner.run_dir.name,
            name=cfg.wandb.name or f"{runner.run_dir.name}-{runner.shard.name}",
        )
        self.logger = MetricsLogger(
            runner.run_dir / "logs" / runner.shard.name, "synth", wandb_cfg, to_dict(cfg), resume_step=done
        )
        self.pending = todo
        # After W&B has started (seconds), so that traces/s measures synthesis alone.
        self.bar = tqdm(
            total=total, initial=done, desc=runner.shard.name, disable=not cfg.progress, file=sys.stderr
        )
        self.t0 = time.perf_counter()

    def update(self, benchmark: str, verdict: Verdict) -> None:
        self.done += 1
        self.new += 1
        self.pending -= 1
        if verdict.keep:
            self.counts["kept"] += 1
        else:
            self.counts["rejected"] += 1
            reasons = self.counts["rejected_by_reason"]
            reasons[verdict.reason] = reasons.get(verdict.reason, 0) + 1
        self.bar.update(1)
        if self.done % self.log_every == 0 or self.pending == 0:
            self.log()

    def log(self) -> None:
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        metrics = {
            "synth/done": self.done,
            "synth/kept": self.counts["kept"],
            "synth/rejected": self.counts["rejected"],
            "synth/traces_per_s": round(self.new / elapsed, 3),
        }
        metrics.update({f"synth/rejected/{r}": n for r, n in self.counts["rejected_by_reason"].items()})
        self.logger.log(self.done, metrics)

    def close(self) -> None:
        self.bar.close()
        self.logger.close()


def identity_cfg(cfg: SynthRunConfig) -> SynthRunConfig:
    """The config stored in the run directory: shard-independent."""
    return dataclasses.replace(cfg, shard_index=None)


def run_shards(cfg: SynthRunConfig, shards: Iterable[ShardSpec], llm: Any = None) -> list[dict[str, Any]]:
    """Load inputs (raising before any write on bad input), prepare the run dir, run each shard."""
    inputs = load_inputs(cfg)
    prepare_run_dir(cfg.out, identity_cfg(cfg), ignore_keys=IDENTITY_IGNORE)
    llm = llm if llm is not None else make_llm(cfg)
    return [ShardRunner(cfg, shard, inputs, llm).run() for shard in shards]


def run_config(cfg: SynthRunConfig) -> list[dict[str, Any]]:
    """The `synth` stage (`mtr_hpc.stages`): run the shard the config names (`shard_index`), or every
    shard in turn; the shards' manifests without their config and versions."""
    indices = [cfg.shard_index] if cfg.shard_index is not None else range(cfg.num_shards)
    manifests = run_shards(cfg, [ShardSpec(i, cfg.num_shards) for i in indices])
    return [{k: v for k, v in m.items() if k not in ("config", "versions")} for m in manifests]
