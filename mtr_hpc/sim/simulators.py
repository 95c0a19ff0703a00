"""The two kinds of `ToolSimulator`: simulated tools (ToolMaker + ToolActor) and corpus retrieval."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

from ..data.example import QAExample
from .evidence import build_kb
from .protocol import EpisodeSetup
from .retrieval import Prefetched, Retriever
from .retrieval_env import RetrievalActor, RetrievalEnvConfig, retrieval_toolset, round_query
from .toolactor import ToolActor, ToolState
from .toolmaker import ToolMaker


def _timed(owner, call):
    """`call`, adding the seconds each call takes to `owner.latency_s`."""

    def timed(name: str, args: dict[str, Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return call(name, args)
        finally:
            owner.latency_s += time.perf_counter() - t0

    return timed


class ActorSimulator:
    """The ToolMaker writes the example's tools; the ToolActor answers each call (design §5).

    With the `llm` backend the simulator is also the episodes' `ToolBatch`: a turn round's calls are
    simulated concurrently, one coroutine per episode (an episode's calls keep their order), and the
    client gathers their requests into one `chat_many` (`CoalescingClient`).
    """

    def __init__(self, maker: ToolMaker, actor: ToolActor):
        from ..llm.coalesce import CoalescingClient

        self.maker, self.actor = maker, actor
        if actor.cfg.backend == "llm" and not isinstance(actor.llm, CoalescingClient):
            actor.llm = CoalescingClient(actor.llm)
        self.latency_s = 0.0
        # The G episodes of a GRPO group open the same example one after another: its evidence and
        # tools are built once.
        self._last: tuple[QAExample, Any, Any] | None = None

    def open(self, example: QAExample, seed: int) -> EpisodeSetup:
        if self._last is None or self._last[0] is not example:
            kb = build_kb(example)
            self._last = (example, kb, self.maker.make(example, kb))
        _, kb, toolset = self._last
        episode = self.actor.episode(example, kb, toolset, seed)
        if self.actor.cfg.backend == "llm":

            def call(name: str, args: dict[str, Any]) -> Any:
                return self.answer([(episode, name, args)])[0]

            return EpisodeSetup(example, list(toolset.tools), call, batch=self, state=episode)
        return EpisodeSetup(example, list(toolset.tools), _timed(self, partial(self.actor.call, episode)))

    def answer(self, requests: list[tuple[ToolState, str, dict[str, Any]]]) -> list[Any]:
        t0 = time.perf_counter()
        out: list[Any] = [None] * len(requests)
        by_episode: dict[int, list[int]] = {}
        for i, (ep, _, _) in enumerate(requests):
            by_episode.setdefault(id(ep), []).append(i)

        async def episode_calls(idx: list[int]) -> None:
            for i in idx:
                ep, name, args = requests[i]
                out[i] = await self.actor.acall(ep, name, args)

        async def round_() -> None:
            await asyncio.gather(*(episode_calls(idx) for idx in by_episode.values()))

        asyncio.run(round_())
        self.latency_s += time.perf_counter() - t0
        return out

    def metrics(self) -> dict[str, float]:
        """Running totals: calls, replay-cache hits, tool-model outputs that failed validation, retried
        requests, calls answered with an error observation, calls whose evidence the noise held back,
        and seconds spent answering."""
        stats = self.actor.stats
        return {
            "calls": stats["calls"],
            "cache_hits": self.actor.cache.hits,
            "invalid": stats["invalid_json"] + stats["invalid_schema"],
            "retries": stats["retries"],
            "errors": sum(v for k, v in stats.items() if k.startswith("error:")),
            "held_back": stats["held_back"],
            "latency_s": self.latency_s,
        }


def toolsim_metrics(before: dict[str, float], after: dict[str, float], prefix: str) -> dict[str, float]:
    """The change of `ActorSimulator.metrics()` between two snapshots, keyed `{prefix}toolsim/<name>`."""
    return {f"{prefix}toolsim/{k}": after[k] - before.get(k, 0) for k in after}


class RetrievalSimulator:
    """One search engine for every question, behind the tools of training (the ToolMaker's, built from
    the question's evidence exactly as the simulators build them) or `search` / `open_page` alone.

    With `batch_rounds` it is also the episodes' `ToolBatch`: the searches of a turn round go to the
    engine in one batch (one request to a server), then each call is answered from them."""

    def __init__(
        self, corpus: Retriever, cfg: RetrievalEnvConfig | None = None, maker: ToolMaker | None = None
    ):
        self.actor = RetrievalActor(corpus, cfg)
        self.maker = maker or ToolMaker()
        self.search_tools = retrieval_toolset()
        self.latency_s = 0.0
        self._last: tuple[QAExample, Any] | None = None

    def open(self, example: QAExample, seed: int) -> EpisodeSetup:
        if self.actor.cfg.tools == "search":
            toolset = self.search_tools
        else:
            if self._last is None or self._last[0] is not example:
                self._last = (example, self.maker.make(example, build_kb(example)))
            toolset = self._last[1]
        episode = self.actor.episode(example, None, toolset, seed)
        if self.actor.cfg.batches_rounds and hasattr(self.actor.index, "rank_many"):

            def call(name: str, args: dict[str, Any]) -> Any:
                return self.answer([(episode, name, args)])[0]

            return EpisodeSetup(example, list(toolset.tools), call, batch=self, state=episode)
        return EpisodeSetup(example, list(toolset.tools), _timed(self, partial(self.actor.call, episode)))

    def answer(self, requests: list[tuple[ToolState, str, dict[str, Any]]]) -> list[Any]:
        t0 = time.perf_counter()
        fmt = self.actor.cfg.results
        wanted: dict[int, list[str]] = {}
        for ep, name, args in requests:
            query = round_query(ep.toolset, name, args, fmt) if isinstance(args, dict) else None
            if query is not None:
                wanted.setdefault(query[1], []).append(query[0])
        index = Prefetched(self.actor.index, wanted)
        out = [self.actor.call(ep, name, args, index) for ep, name, args in requests]
        self.latency_s += time.perf_counter() - t0
        return out

    def metrics(self) -> dict[str, float]:
        """The running totals `ActorSimulator.metrics` gives, for a real engine: calls, error
        observations and seconds spent searching (no cache, tool model or noise)."""
        stats = self.actor.stats
        errors = stats["unknown_tool"] + stats["bad_arguments"] + stats["unsupported"]
        return {
            "calls": stats["calls"],
            "cache_hits": 0,
            "invalid": 0,
            "retries": 0,
            "errors": errors,
            "held_back": 0,
            "latency_s": self.latency_s,
        }
