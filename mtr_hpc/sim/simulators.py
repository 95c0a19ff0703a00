"""The two kinds of `ToolSimulator`: simulated tools (ToolMaker + ToolActor) and corpus retrieval."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from ..data.example import QAExample
from .evidence import build_kb
from .protocol import EpisodeSetup
from .retrieval_env import CorpusIndex, RetrievalActor, RetrievalEnvConfig, retrieval_toolset
from .toolactor import ToolActor
from .toolmaker import ToolMaker


class ActorSimulator:
    """The ToolMaker writes the example's tools; the ToolActor answers each call (design §5)."""

    def __init__(self, maker: ToolMaker, actor: ToolActor):
        self.maker, self.actor = maker, actor
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
            # One event loop per call until tool requests are batched per turn round.
            def call(name: str, args: dict[str, Any]) -> Any:
                return asyncio.run(self.actor.acall(episode, name, args))
        else:
            call = partial(self.actor.call, episode)
        return EpisodeSetup(example, list(toolset.tools), call)


class RetrievalSimulator:
    """`search` / `open_page` over one passage corpus for every question."""

    def __init__(self, corpus: CorpusIndex, cfg: RetrievalEnvConfig | None = None):
        self.actor = RetrievalActor(corpus, cfg)
        self.toolset = retrieval_toolset()

    def open(self, example: QAExample, seed: int) -> EpisodeSetup:
        episode = self.actor.episode(example, None, self.toolset, seed)
        return EpisodeSetup(example, list(self.toolset.tools), partial(self.actor.call, episode))
