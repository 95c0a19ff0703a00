"""Filtering and the one-example pipeline: ToolMaker -> AutoAgent <-> ToolActor -> filter.

`filter_trace` keeps a trace when the agent stopped at an answer, `validate_trace` finds no issue
(reason: the first issue's code), the answer scores at least the configured EM or F1 against the gold
set (else `wrong_answer`) and, with `require_grounded`, a non-yes/no answer appears in some observation
(else `ungrounded`). In `synthesize_example`, an LLM client error or a timeout becomes a rejected
trace with the reason `llm_error` or `timeout`, and a model that misbehaves inside an episode gets typed
error observations or a rejected trace; any other exception propagates, and the shard runner records
it as a reject of that one example (`runner.py`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ..data.example import QAExample
from ..llm.protocol import LLMError
from ..metrics import normalize_answer, score_example
from ..sim.drive import drive
from ..sim.evidence import build_kb
from ..sim.retrieval import DistractorPool
from ..sim.sim_cache import SimCache
from ..sim.tool_library import ToolLibrary
from ..sim.toolactor import ToolActor
from ..sim.toolmaker import ToolMaker
from ..toolspec import ToolRegistry
from ..trace.model import Trace
from ..trace.validator import validate_trace
from .autoagent import SYSTEM_PROMPT, AutoAgent, TraceBuilder
from .config import FilterConfig, SynthConfig


@dataclass
class Verdict:
    keep: bool
    reason: str
    scores: dict[str, Any] = field(default_factory=dict)


# Observations recur when an example is synthesized again (other seeds, a replayed run: the same
# lookups and pages); a small cache of their normalized text is enough for that.
_normalized_observation = lru_cache(maxsize=1 << 12)(normalize_answer)


def _grounded(trace: Trace) -> bool:
    answer = normalize_answer(trace.answer or "")
    if answer in ("yes", "no"):
        return True
    if not answer:
        return False
    contents = [m.get("content") or "" for m in trace.messages if m.get("role") == "tool"]
    # Inside one observation is inside their concatenation, so a hit ends the search; the answer is
    # usually in the last observations. Only a miss needs the joined text (an answer may straddle two).
    observed = []
    for content in reversed(contents):
        text = _normalized_observation(content)
        if answer in text:
            return True
        observed.append(text)
    return answer in " ".join(reversed(observed))


def filter_trace(
    trace: Trace, example: QAExample, cfg: FilterConfig | None = None, *, registry: ToolRegistry | None = None
) -> tuple[bool, str, dict]:
    """(keep, reason, scores) of one trace; `registry`: the compiled `trace.tools` if the caller has it."""
    cfg = cfg or FilterConfig()
    scores: dict[str, Any] = {"em": 0.0, "f1": 0.0}
    stop = trace.meta.get("stop_reason", "answer")
    if stop != "answer":
        return False, str(stop), scores
    issues = validate_trace(trace, max_turns=cfg.max_turns, registry=registry)
    if issues:
        scores["issues"] = sorted({i.code for i in issues})
        return False, issues[0].code, scores
    em, f1 = score_example(example.benchmark, trace.answer or "", example.answers)
    scores.update(em=em, f1=f1)
    if em < cfg.min_em and f1 < cfg.min_f1:
        return False, "wrong_answer", scores
    if cfg.require_grounded and not _grounded(trace):
        return False, "ungrounded", scores
    return True, "ok", scores


@dataclass
class SynthAgents:
    """The three agents of a run, built once and shared by every example of a shard."""

    toolmaker: ToolMaker
    actor: ToolActor
    agent: AutoAgent

    @classmethod
    def build(
        cls,
        cfg: SynthConfig,
        *,
        llm: Any = None,
        library: ToolLibrary | None = None,
        cache: SimCache | None = None,
        pool: DistractorPool | None = None,
    ) -> SynthAgents:
        maker = ToolMaker(cfg.toolmaker, library, llm=llm)
        actor = ToolActor(cfg.toolactor, llm=llm, cache=cache, pool=pool)
        return cls(maker, actor, AutoAgent(cfg.autoagent, actor, llm=llm))

    @property
    def uses_llm(self) -> bool:
        return "llm" in (self.toolmaker.cfg.backend, self.actor.cfg.backend, self.agent.cfg.backend) or (
            self.toolmaker.cfg.classifier == "llm"
        )


def _provenance(cfg: SynthConfig, agents: SynthAgents) -> dict[str, Any]:
    return {
        "agents": {
            "toolmaker": agents.toolmaker.cfg.backend,
            "classifier": agents.toolmaker.cfg.classifier,
            "autoagent": agents.agent.cfg.backend,
            "toolactor": agents.actor.cfg.backend,
        },
        "model": cfg.model if agents.uses_llm else None,
        "seed": cfg.seed,
    }


def _failed_trace(example: QAExample, trace_id: str, reason: str, message: str) -> Trace:
    builder = TraceBuilder(SYSTEM_PROMPT, example.question)
    meta = {"stop_reason": reason, "error": message[:500]}
    return Trace(trace_id, example.id, example.benchmark, [], builder.messages, None, meta)


async def asynthesize_example(
    example: QAExample, cfg: SynthConfig, agents: SynthAgents
) -> tuple[Trace, Verdict]:
    trace_id = f"{example.benchmark}:{example.id}:s{cfg.seed}"
    t0 = time.perf_counter()
    registry = None
    try:
        kb = build_kb(example)
        toolset = await agents.toolmaker.amake(example, kb)
        ep = agents.actor.episode(example, kb, toolset, cfg.seed)
        trace = await agents.agent.arun(ep, trace_id)
        # The trace declares exactly the episode's tools, already compiled for validation.
        registry = ep.trace_registry
        trace.meta["task"] = {
            "kind": toolset.task.kind,
            "yes_no": toolset.task.yes_no,
            "source": toolset.task.source,
        }
    except LLMError as exc:
        trace = _failed_trace(example, trace_id, "llm_error", str(exc))
    except TimeoutError as exc:
        trace = _failed_trace(example, trace_id, "timeout", str(exc) or "timed out")
    keep, reason, scores = filter_trace(trace, example, cfg.filter, registry=registry)
    trace.meta.update(_provenance(cfg, agents))
    trace.meta["validation"] = {"keep": keep, "reason": reason, **scores}
    trace.meta["timings"] = {
        "total_s": round(time.perf_counter() - t0, 6),
        "agent_s": trace.meta.pop("agent_s", None),
    }
    return trace, Verdict(keep, reason, scores)


def synthesize_example(
    example: QAExample,
    cfg: SynthConfig | None = None,
    agents: SynthAgents | None = None,
    *,
    llm: Any = None,
) -> tuple[Trace, Verdict]:
    """One example through the whole pipeline, from synchronous code.

    Grounded backends run without an event loop; `llm` backends run under `asyncio.run` (callers that
    already have a loop use `asynthesize_example`).
    """
    cfg = cfg or SynthConfig()
    agents = agents or SynthAgents.build(cfg, llm=llm)
    coro = asynthesize_example(example, cfg, agents)
    return asyncio.run(coro) if agents.uses_llm else drive(coro)
