"""The tool simulator of each environment of `tools` mode (`EvalConfig.envs`), built from the config.

- `grounded`: the synthesis pipeline's own tools (ToolMaker templates) answered by the grounded
  ToolActor, with distractors drawn from the benchmark's other questions: the tools seen in training.
- `llm`: the same tools, observations played by a model (`EvalConfig.llm`): in process, or behind an
  OpenAI-compatible endpoint. One client serves every benchmark of a run.
- `retrieval`: `search` / `open_page` answered from a real BM25 index over a passage corpus.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..data.example import QAExample
from ..retrievers import SearchEngine
from ..sim import ActorSimulator, RetrievalSimulator, ToolSimulator
from .config import EvalConfig


def build_simulator(
    kind: str,
    cfg: EvalConfig,
    examples: list[QAExample],
    corpus: SearchEngine | None = None,
    tool_llm: Any = None,
) -> ToolSimulator:
    """The simulator of environment `kind` for the questions of one benchmark (`examples`); `tool_llm`
    is the client of the `llm` environment (built from `cfg.llm` when not given)."""
    from ..sim.evidence import build_kb
    from ..sim.retrieval import DistractorPool
    from ..sim.toolactor import ToolActor
    from ..sim.toolmaker import ToolMaker

    if kind == "retrieval":
        if corpus is None:
            raise ValueError("the retrieval environment needs a search engine")
        return RetrievalSimulator(corpus, cfg.retrieval)
    if kind == "grounded":
        pool = DistractorPool.from_kbs([build_kb(ex) for ex in examples])
        return ActorSimulator(ToolMaker(), ToolActor(replace(cfg.toolactor, backend="grounded"), pool=pool))
    client = tool_llm if tool_llm is not None else cfg.llm.client()
    return ActorSimulator(ToolMaker(), ToolActor(replace(cfg.toolactor, backend="llm"), llm=client))
