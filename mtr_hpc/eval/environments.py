"""The tool environment of `tools` mode: tool set + actor episode per question, for `run_episodes`.

- `grounded`: the synthesis pipeline's own environment (ToolMaker template tools, grounded ToolActor
  with distractors drawn from the benchmark's other questions), i.e. the tools seen in training.
- `llm`: the same tool sets, observations simulated by a ToolActor endpoint (OpenAI-compatible).
- `retrieval`: `search` / `open_page` answered from a real BM25 index over a passage corpus.
"""

from __future__ import annotations

from typing import Any

from ..data.example import QAExample
from ..rollout.episode import EpisodeSetup
from .config import EvalConfig
from .retrieval import CorpusIndex, RetrievalActor, retrieval_toolset


class ToolEnvironment:
    """Builds `EpisodeSetup`s (via `EpisodeSetup.from_actor`) for the questions of one benchmark in one
    environment (`kind`, one of `EvalConfig.envs`); the actor and its caches live for the whole run."""

    def __init__(
        self, kind: str, cfg: EvalConfig, examples: list[QAExample], corpus: CorpusIndex | None = None
    ):
        from ..synth import DistractorPool, ToolActor, ToolActorConfig, ToolMaker, build_kb

        self.kind = kind
        self.seed = cfg.generation.seed
        self._build_kb = build_kb
        self.maker = ToolMaker() if self.kind != "retrieval" else None
        if self.kind == "retrieval":
            if corpus is None:
                raise ValueError("the retrieval environment needs a CorpusIndex")
            self.actor: Any = RetrievalActor(corpus, cfg.retrieval)
            self.toolset = retrieval_toolset()
        elif self.kind == "grounded":
            pool = DistractorPool.from_kbs([build_kb(ex) for ex in examples])
            self.actor = ToolActor(ToolActorConfig(), pool=pool)
        else:
            from ..llm import make_client

            client = make_client(
                "openai",
                cfg.llm.model,
                base_url=cfg.llm.base_url,
                api_key_env=cfg.llm.api_key_env,
                concurrency=cfg.llm.concurrency,
            )
            self.actor = ToolActor(ToolActorConfig(backend="llm"), llm=client)

    def setups(self, examples: list[QAExample]) -> list[EpisodeSetup]:
        out = []
        for ex in examples:
            if self.kind == "retrieval":
                toolset, kb = self.toolset, None
            else:
                kb = self._build_kb(ex)
                toolset = self.maker.make(ex, kb)
            out.append(EpisodeSetup.from_actor(self.actor, self.actor.episode(ex, kb, toolset, self.seed)))
        return out
