"""`run_eval`: every (model, setting, benchmark) cell of an `EvalConfig`, resumable, then the outputs.

Order of work: build and check the whole plan (`plan.build_plan`) before loading any model; then per
model load one engine and run its pending questions setting by setting (`direct`, then `tools` in each
environment of `envs`), every benchmark of a setting in one engine call (`direct`) or one `run_episodes`
call (`tools`): the transformers engine keeps `batch_size` requests decoding at once and starts the
next as soon as one ends (vLLM schedules within each turn round). Each question is appended to the
journal as it finishes, so a killed run loses only the questions in flight. A rerun loads only models
with pending questions, and a finished run given another setting runs only that one. Finally
results.json, report.md, the plots, `eval/*` metrics (metrics.jsonl and W&B) and manifest.json are
(re)written from the whole journal, so they always describe every question answered so far.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import to_dict
from ..precision import resolve_dtype
from ..rundir import prepare_run_dir, write_manifest
from ..sim import ToolSimulator
from ..trace.chat_format import read_tools_format
from .config import EvalConfig, setting_label, settings
from .environments import build_simulator
from .journal import PredictionJournal
from .models import ModelSource, hf_dir_for
from .modes import TOOLS_SYSTEM_PROMPT, Job, base_record, run_direct, run_tools
from .plan import EvalPlan, build_plan
from .report import build_results

# Keys that do not change any prediction: a resumed run may differ in them. `modes` and `envs` only choose
# which settings run (the journal keys each prediction by its setting), so a finished run can gain one.
RESUMABLE_KEYS = (
    "out",
    "progress",
    "training_runs",
    "wandb",
    "batch_size",
    "device",
    "allow_train_overlap",
    "modes",
    "envs",
    # Where the engine is reached and how it is asked, not what it answers.
    *(
        f"retrieval.{k}"
        for k in ("url", "timeout_s", "max_retries", "threads", "batch_rounds", "encoder", "device")
    ),
)

EngineFactory = Callable[[str, EvalConfig], tuple[Any, Any]]


def hf_engine(model_path: str, cfg: EvalConfig) -> tuple[Any, Any]:
    """The engine `cfg.engine` names, and the model's tokenizer, for a HF directory or embedded name:
    transformers (`HFRolloutEngine`) or vLLM (`VLLMRolloutEngine`, fp32 or bf16 as `cfg.dtype` says)."""
    from ..models.registry import load_tokenizer
    from ..rollout.choice import choose_engine

    tokenizer = load_tokenizer(model_path)
    if choose_engine(cfg.engine, model_path, key="engine") == "vllm":
        from ..rollout.vllm_engine import VLLMRolloutEngine

        precision = resolve_dtype(cfg.dtype, cfg.device)
        engine = VLLMRolloutEngine(
            model_path,
            dtype=precision.dtype,
            max_model_len=cfg.generation.max_tokens,
            enable_sleep_mode=False,
            seed=cfg.generation.seed,
        )
        return engine, tokenizer
    from ..rollout.hf_engine import HFRolloutEngine

    engine = HFRolloutEngine(
        model_path, dtype=cfg.dtype, device=cfg.device, batch_size=cfg.batch_size, tokenizer=tokenizer
    )
    return engine, tokenizer


def pending_jobs(plan: EvalPlan, journal: PredictionJournal, model: str) -> list[Job]:
    return [
        Job(model, mode, env, bench, ex)
        for mode, env in settings(plan.cfg)
        for bench, exs in plan.examples.items()
        for ex in exs
        if (model, setting_label(mode, env), bench, ex.id) not in journal
    ]


class _Runner:
    """Runs the questions of one model; tool environments are built once per (environment, benchmark).
    Tools are listed in the format the model was trained with (its directory records it,
    `trace.chat_format`)."""

    def __init__(
        self, plan: EvalPlan, engine: Any, tokenizer: Any, tools_format: str = "json", tool_llm: Any = None
    ):
        from ..trace.render import ChatRenderer

        self.plan = plan
        self.engine = engine
        self.direct_renderer = ChatRenderer(tokenizer)
        self.tools_renderer = ChatRenderer(tokenizer, tools_format=tools_format)
        self.simulators: dict[tuple[str, str], ToolSimulator] = {}
        self._env_cfg: Any = None
        self.tool_llm = tool_llm

    def env_cfg(self, max_turns: int | None = None) -> Any:
        if max_turns is not None:
            return dataclasses.replace(self.env_cfg(), max_turns=max_turns)
        if self._env_cfg is None:
            from ..rollout.env import EnvConfig

            g = self.plan.cfg.generation
            self._env_cfg = EnvConfig(
                max_turns=g.max_turns,
                max_tokens=g.max_tokens,
                max_turn_tokens=g.max_new_tokens,
                system_prompt=TOOLS_SYSTEM_PROMPT,
                end_on_invalid_call=g.end_on_invalid_call,
                max_repeats=g.max_repeats,
            )
        return self._env_cfg

    def simulator(self, kind: str, bench: str) -> ToolSimulator:
        """Built once per environment and benchmark; its actor and caches live for the whole run."""
        if (kind, bench) not in self.simulators:
            plan = self.plan
            self.simulators[kind, bench] = build_simulator(
                kind, plan.cfg, plan.examples[bench], plan.corpus, self.tool_llm
            )
        return self.simulators[kind, bench]

    def run(
        self,
        jobs: list[Job],
        on_record: Callable[[dict[str, Any]], None] | None,
        max_turns: int | None = None,
    ) -> list[dict[str, Any]]:
        """The questions of one setting, from any benchmarks, in one engine call; `on_record` hears of
        each question's record as it finishes. `max_turns` caps the episodes below the config's."""
        gen = self.plan.cfg.generation
        if jobs[0].mode == "direct":
            return run_direct(self.engine, self.direct_renderer, jobs, gen, on_record)
        seed = self.plan.cfg.generation.seed
        setups = [self.simulator(j.env, j.benchmark).open(j.example, seed) for j in jobs]
        return run_tools(
            self.engine, self.tools_renderer, jobs, setups, gen, self.env_cfg(max_turns), on_record
        )


def _evaluate_model(
    plan: EvalPlan,
    source: ModelSource,
    run_dir: Path,
    journal: PredictionJournal,
    factory: EngineFactory,
    tool_llm: Any,
    timings: dict[str, Any],
) -> int:
    """Answers the model's pending questions; `timings[model]` gets each setting's seconds and, for an
    engine that counts them, its prefill tokens: computed, and reused from its prefix cache."""

    jobs = pending_jobs(plan, journal, source.name)
    if not jobs:
        return 0
    model_dir = hf_dir_for(source, run_dir)
    engine, tokenizer = factory(model_dir, plan.cfg)
    try:
        _answer(plan, source, engine, tokenizer, model_dir, jobs, journal, tool_llm, timings)
    finally:
        getattr(engine, "close", lambda: None)()  # one vLLM engine at a time in a process
    return len(jobs)


def _answer(plan, source, engine, tokenizer, model_dir, jobs, journal, tool_llm, timings) -> None:
    from tqdm import tqdm

    runner = _Runner(plan, engine, tokenizer, read_tools_format(model_dir), tool_llm)
    with tqdm(total=len(jobs), desc=f"eval {source.name}", unit="q", disable=not plan.cfg.progress) as bar:

        def record(rec: dict[str, Any]) -> None:
            journal.append([rec])
            bar.update(1)

        mine = timings.setdefault(source.name, {})
        for mode, env in settings(plan.cfg):
            setting_jobs = [j for j in jobs if (j.mode, j.env) == (mode, env)]
            if setting_jobs:
                label = setting_label(mode, env)
                bar.set_postfix(setting=label, refresh=False)
                t0 = time.perf_counter()
                before = dict(getattr(engine, "prefill_stats", {}))
                run_setting(runner, setting_jobs, record, plan.cfg.generation.probe)
                mine[label] = {"seconds": round(time.perf_counter() - t0, 1)}
                after = getattr(engine, "prefill_stats", {})
                mine[label].update({k: v - before.get(k, 0) for k, v in after.items()})


def run_setting(runner: _Runner, jobs: list[Job], record: Callable, probe: int) -> None:
    """A setting's questions. A tools setting first tries the first turn of `probe` of them (spread over
    the benchmarks): when any parses, every question runs in full; when none does, those episodes are
    already what a full run gives (they end at their first turn) and the others are recorded as not
    run."""
    if jobs[0].mode != "tools" or not 0 < probe < len(jobs):
        runner.run(jobs, record)
        return
    first, rest = probe_split(jobs, probe)
    trial = runner.run(first, None, max_turns=1)
    if any(parsed(rec) for rec in trial):
        runner.run(jobs, record)
        return
    why = f"probe: no first turn of {len(first)} questions of this setting parsed; not run"
    for rec in trial:
        record(rec)
    for job in rest:
        record(not_run_record(job, why))


def probe_split(jobs: list[Job], k: int) -> tuple[list[Job], list[Job]]:
    """`k` jobs taken in turn from each benchmark's, and the others (each in their order)."""
    by_bench: dict[str, list[Job]] = {}
    for j in jobs:
        by_bench.setdefault(j.benchmark, []).append(j)
    first: list[Job] = []
    for i in range(max(map(len, by_bench.values()))):
        first += [js[i] for js in by_bench.values() if i < len(js)]
    first = first[:k]
    chosen = {id(j) for j in first}
    return first, [j for j in jobs if id(j) not in chosen]


def parsed(rec: dict[str, Any]) -> bool:
    """Whether any turn of a tools episode parsed: it answered, or made a call."""
    return rec.get("finish") == "answer" or int(rec.get("tool_calls", 0)) > 0


def not_run_record(job: Job, why: str) -> dict[str, Any]:
    rec = base_record(job)
    rec.update(prediction="", messages=[], turns=0, tool_calls=0, invalid_calls=0, finish="not_run",
               format_valid=False, n_generated=0, error=why)  # fmt: skip
    return rec


def corpus_meta(plan: EvalPlan) -> dict[str, Any]:
    """The retrieval corpus of a run, and per benchmark the share of questions it holds the evidence
    pages of (MuSiQue's and Bamboogle's shipped records name pages the shipped corpus lacks)."""
    from ..sim.retrieval_env import corpus_coverage

    coverage = {b: round(corpus_coverage(exs, plan.corpus), 4) for b, exs in plan.examples.items()}
    return {"path": plan.corpus.path, "passages": getattr(plan.corpus, "n_docs", None), "coverage": coverage}


def run_eval(cfg: EvalConfig, *, engine_factory: EngineFactory | None = None) -> dict[str, Any]:
    """Evaluate every cell of `cfg` into `cfg.out`; returns a summary (counts, timings, output paths)."""
    from .outputs import write_outputs

    t0 = time.time()
    plan = build_plan(cfg)
    precision = resolve_dtype(cfg.dtype, cfg.device)
    print(f"eval: {precision.describe()}", file=sys.stderr)
    run_dir = prepare_run_dir(cfg.out, cfg, ignore_keys=RESUMABLE_KEYS)
    journal = PredictionJournal(run_dir / "predictions.jsonl")
    resumed = len(journal)
    answered = 0
    timings: dict[str, Any] = {}
    # One model plays the tools of the `llm` environment for every model and benchmark (an in-process
    # one loads on its first request, so a run that has nothing left to answer never loads it).
    tool_llm = cfg.llm.client() if ("tools", "llm") in settings(cfg) else None
    for source in plan.models:
        answered += _evaluate_model(
            plan, source, run_dir, journal, engine_factory or hf_engine, tool_llm, timings
        )
    results = build_results(
        [m.name for m in plan.models],
        [setting_label(mode, env) for mode, env in settings(cfg)],
        plan.examples,
        journal.select,
        plan.conventions,
        meta={
            "envs": list(cfg.envs),
            "retrieval_corpus": None if plan.corpus is None else corpus_meta(plan),
            "generation": to_dict(cfg.generation),
            "models": {m.name: m.path for m in plan.models},
            "precision": precision.to_dict(),
        },
    )
    results["train_overlap"] = plan.train_overlap
    paths = write_outputs(run_dir, cfg, results)
    summary = {
        "out": str(run_dir),
        "answered": answered,
        "resumed": resumed,
        "questions": len(journal),
        "seconds": round(time.time() - t0, 2),
        # Per model and setting answered in this run: seconds, and the engine's prefill tokens.
        "timing_s": timings,
        "precision": precision.to_dict(),
        "outputs": [str(p) for p in paths],
    }
    write_manifest(run_dir, "eval", **summary)
    return summary
