"""The tool simulator of each environment of `tools` mode (`EvalConfig.envs`), built from the config.

- `grounded`: the synthesis pipeline's own tools (ToolMaker templates) answered by the grounded
  ToolActor, with distractors drawn from the benchmark's other questions: the tools seen in training.
- `llm`: the same tools, observations played by a model behind an OpenAI-compatible endpoint.
- `retrieval`: `search` / `open_page` answered from a real BM25 index over a passage corpus.
"""

from __future__ import annotations

from ..data.example import QAExample
from ..sim import ActorSimulator, RetrievalSimulator, ToolSimulator
from ..sim.retrieval_env import CorpusIndex
from .config import EvalConfig


def build_simulator(
    kind: str, cfg: EvalConfig, examples: list[QAExample], corpus: CorpusIndex | None = None
) -> ToolSimulator:
    """The simulator of environment `kind` for the questions of one benchmark (`examples`)."""
    from ..sim.config import ToolActorConfig
    from ..sim.evidence import build_kb
    from ..sim.retrieval import DistractorPool
    from ..sim.toolactor import ToolActor
    from ..sim.toolmaker import ToolMaker

    if kind == "retrieval":
        if corpus is None:
            raise ValueError("the retrieval environment needs a CorpusIndex")
        return RetrievalSimulator(corpus, cfg.retrieval)
    if kind == "grounded":
        pool = DistractorPool.from_kbs([build_kb(ex) for ex in examples])
        return ActorSimulator(ToolMaker(), ToolActor(ToolActorConfig(), pool=pool))
    from ..llm import make_client

    client = make_client(
        "openai",
        cfg.llm.model,
        base_url=cfg.llm.base_url,
        api_key_env=cfg.llm.api_key_env,
        concurrency=cfg.llm.concurrency,
    )
    return ActorSimulator(ToolMaker(), ToolActor(ToolActorConfig(backend="llm"), llm=client))
