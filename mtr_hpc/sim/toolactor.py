"""ToolActor: the simulated environment of one episode (design §5).

`ToolActor.episode(example, kb, toolset, seed)` opens a `ToolState`, what the actor keeps of one
episode (its tools, memo and call history); `call(episode, name, args)` returns the
observation, always a JSON object valid against the tool's `x-returns`: an undeclared tool, invalid
arguments or a failed simulation give a typed error observation `{"error": {"type", "message"}}`
instead of an exception. The same call within an episode returns the same observation, and every
simulated observation goes through the replay cache keyed by (interface hash, canonical arguments,
example id, seed). Transient client errors (`llm_error`) are not cached, so a rerun can retry them.
`compare`/`calculate` are computed, never simulated, in both backends.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..data.example import QAExample
from ..errors import ConfigError
from ..toolspec import ToolRegistry, canonical_json
from ..trace.validator import registry_for
from .config import ToolActorConfig
from .drive import drive
from .evidence import EvidenceKB
from .grounded_sim import conform
from .observations import answer_call, hold_back
from .retrieval import DistractorPool, PassageIndex, example_corpus
from .schemas import error_observation, is_error
from .sim_cache import SimCache, tool_hash
from .toolmaker import ToolSet
from .utility_tools import COMPUTED, run_computed


@dataclass
class ToolState:
    """The ToolActor's state of one episode: the example, its tools, the calls seen and their answers."""

    example: QAExample
    kb: EvidenceKB
    toolset: ToolSet
    registry: ToolRegistry
    seed: int
    memo: dict[str, Any] = field(default_factory=dict)
    history: list[tuple[str, dict, Any]] = field(default_factory=list)
    _index: PassageIndex | None = None
    # `registry_for(toolset.tools)`: what `validate_trace` checks this episode's trace with.
    trace_registry: ToolRegistry | None = None


def precheck(ep: ToolState, name: Any, args: Any, stats: Counter) -> tuple[dict[str, Any] | None, str]:
    """What every actor does first with a call: (the observation to return at once, or None; the
    canonical JSON of the arguments). An undeclared tool or invalid arguments are typed errors, and a
    call the episode made before gets its first answer."""
    stats["calls"] += 1
    if not isinstance(name, str) or ep.registry.get(name) is None:
        stats["unknown_tool"] += 1
        return error_observation("unknown_tool", f"no tool named {name!r} is declared"), ""
    arg_errors = ep.registry.validate_arguments(name, args)
    if arg_errors:
        stats["bad_arguments"] += 1
        return error_observation("bad_arguments", f"invalid arguments: {arg_errors[0]}"), ""
    args_json = canonical_json(args)
    seen = ep.memo.get(name + "\x00" + args_json)
    if seen is not None:
        stats["episode_repeats"] += 1
    return seen, args_json


def remember(ep: ToolState, name: str, args: Any, args_json: str, obs: dict[str, Any]) -> None:
    """Record an answered call in the episode: a repeat gets the same answer (`precheck`)."""
    ep.memo[name + "\x00" + args_json] = obs
    ep.history.append((name, args, obs))


class ToolActor:
    def __init__(
        self,
        cfg: ToolActorConfig | None = None,
        *,
        llm: Any = None,
        cache: SimCache | None = None,
        pool: DistractorPool | None = None,
    ):
        self.cfg = cfg or ToolActorConfig()
        if self.cfg.backend == "llm" and llm is None:
            raise ConfigError("toolactor.backend", "the llm backend needs an LLM client")
        self.llm = llm
        self.cache = cache if cache is not None else SimCache(self.cfg.cache_path or None)
        self.corpus = None
        if self.cfg.corpus:
            from .retrieval_env import corpus_pages, corpus_path

            self.corpus = corpus_pages(str(corpus_path(self.cfg.corpus)))
            pool = DistractorPool(self.corpus.passages)
        self.pool = pool
        # The hold-back probability now: `cfg.noise`, or the curriculum's value at the GRPO step
        # (`set_step`).
        self.noise = self.cfg.noise
        self.stats: Counter[str] = Counter()
        # Tool sets and interfaces come from the ToolMaker's library, so the same objects recur across
        # episodes: registries and interface hashes are memoised by object identity (the value keeps the
        # objects alive, so an id is never reused while its entry exists).
        self._registries: dict[tuple[int, ...], tuple[list, ToolRegistry, ToolRegistry]] = {}
        self._hashes: dict[int, tuple[dict, str]] = {}
        # `llm` calls being simulated, by cache key: the members of a GRPO group make the same call in
        # the same round, and must get one answer, as they would from the cache a moment later.
        self._inflight: dict[tuple, asyncio.Future] = {}

    def set_step(self, step: int) -> float:
        """Follow the noise curriculum to GRPO step `step`; returns the hold-back probability."""
        self.noise = self.cfg.noise_at(step)
        return self.noise

    def episode(self, example: QAExample, kb: EvidenceKB, toolset: ToolSet, seed: int) -> ToolState:
        if self.corpus is not None and not kb.corpus_applied:
            kb.use_pages(self._corpus_lookup)
            kb.corpus_applied = True
        key = tuple(id(t) for t in toolset.tools)
        hit = self._registries.get(key)
        if hit is None:
            tools = list(toolset.tools)
            # The second registry is the one `validate_trace` looks up for these tools (built from
            # their canonical JSON), compiled once per tool set for the filter of every trace.
            hit = self._registries[key] = (
                tools,
                ToolRegistry(tools, strict=False),
                registry_for(tools),
            )
        return ToolState(example, kb, toolset, hit[1], seed, trace_registry=hit[2])

    def _corpus_lookup(self, title: str) -> list[str] | None:
        from .retrieval_env import page_index

        page = page_index(self.corpus).find_page(title)
        return list(page.sentences) if page is not None else None

    def _tool_hash(self, tool: dict) -> str:
        hit = self._hashes.get(id(tool))
        if hit is None:
            hit = self._hashes[id(tool)] = (tool, tool_hash(tool))
        return hit[1]

    def call(self, ep: ToolState, name: str, args: Any) -> dict[str, Any]:
        """Synchronous `acall` (grounded backend)."""
        return drive(self.acall(ep, name, args))

    async def acall(self, ep: ToolState, name: str, args: Any) -> dict[str, Any]:
        early, args_json = precheck(ep, name, args, self.stats)
        if early is not None:
            return early
        tool = ep.registry[name]
        key: tuple = (self._tool_hash(tool), args_json, str(ep.example.id), int(ep.seed))
        if self.noise > 0 and self.cfg.backend == "grounded":  # the same call answers differently
            key = (*key, round(self.noise, 6))
        obs = self.cache.get(key)
        if obs is None:
            obs = await self._simulate_once(key, ep, name, tool, args)
            if not (is_error(obs) and obs["error"]["type"] == "llm_error"):
                self.cache.put(key, obs)
        if is_error(obs):
            self.stats[f"error:{obs['error']['type']}"] += 1
        remember(ep, name, args, args_json, obs)
        return obs

    async def _simulate_once(self, key: tuple, ep: ToolState, name: str, tool: dict, args: dict) -> Any:
        if self.cfg.backend != "llm":  # grounded calls never suspend: nothing can be in flight
            return await self._simulate(ep, name, tool, args)
        waiting = self._inflight.get(key)
        if waiting is not None:
            self.stats["shared_in_flight"] += 1
            return await asyncio.shield(waiting)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            obs = await self._simulate(ep, name, tool, args)
        except BaseException:
            fut.cancel()
            raise
        finally:
            del self._inflight[key]
        fut.set_result(obs)
        return obs

    async def _simulate(self, ep: ToolState, name: str, tool: dict, args: dict) -> dict[str, Any]:
        def validate(obs: Any) -> list[str]:
            return ep.registry.validate_observation(name, obs)

        if name in COMPUTED and name in ep.toolset.names():
            return conform(tool, run_computed(name, args), validate)
        if self.cfg.backend == "grounded":
            payload = self._grounded(ep, name, args)
            if name in ep.toolset.templated and self.cfg.trust_templates:
                return payload
            return conform(tool, payload, validate)
        from .llm_sim import simulate_llm

        hint = (
            "\n".join(f"{t}: {' '.join(s)}" for t, s in ep.kb.pages.items())
            if self.cfg.evidence_hint
            else None
        )
        return await simulate_llm(
            self.llm,
            tool,
            args,
            ep.history,
            hint,
            validate,
            retries=self.cfg.llm_retries,
            timeout_s=self.cfg.llm_timeout_s,
            max_tokens=self.cfg.max_tokens,
            temperature=self.cfg.temperature,
            seed=ep.seed,
            stats=self.stats,
        )

    def _grounded(self, ep: ToolState, name: str, args: dict) -> dict[str, Any]:
        relation = ep.toolset.relation_of.get(name)
        held = frozenset()
        if relation is not None or name == "search":
            held = hold_back(self.noise, ep.seed, str(ep.example.id), name, args, ep.kb.gold_titles())
            if held:
                self.stats["held_back"] += 1
        obs = answer_call(self._index(ep), name, args, relation, self.cfg.results, held)
        if obs is None:
            return error_observation(
                "unsupported", f"the grounded simulator has no evidence for tool {name!r}"
            )
        return obs

    def _index(self, ep: ToolState) -> PassageIndex:
        if ep._index is None:
            rng = random.Random(f"{ep.seed}:{ep.example.id}")
            ep._index = PassageIndex(example_corpus(ep.kb, self.pool, rng, self.cfg.n_distractors))
        return ep._index
