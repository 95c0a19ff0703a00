"""Tool simulators: what answers a policy's tool calls in GRPO and evaluation (design §5).

A `ToolSimulator` opens one episode's tools for a question: `open(example, seed) -> EpisodeSetup`,
which holds the tools shown to the policy and a `call(name, arguments) -> observation` that never
raises. Each stage builds its simulator once, from config, and opens every episode through it.
- `ActorSimulator`: the ToolMaker's tools, answered by a ToolActor. Its `grounded` backend answers
  from the example's evidence; its `llm` backend has a model play each tool.
- `RetrievalSimulator`: `search` / `open_page` answered from a BM25 index over a passage corpus
  (`retrieval_env`): the live-style tools of evaluation.
The agents that write training traces (`mtr_hpc.synth`) use the same ToolMaker and ToolActor.

Modules: `protocol` and `simulators` (the boundary and its two kinds); `toolmaker` (with `classify`,
`utility_tools` and the `tool_library`); `toolactor` (with `grounded_sim`, `llm_sim`, the replay cache
`sim_cache` and the observation `schemas`); `evidence` (an example's evidence as pages, triples and
steps); `retrieval` and `bm25` (per-example passage search with distractors); `retrieval_env` (BM25
over a whole corpus); `config`, `text`, `drive`.
"""

from .protocol import EpisodeSetup, ToolBatch, ToolSimulator, answer_round, open_groups
from .simulators import ActorSimulator, RetrievalSimulator

__all__ = [
    "ActorSimulator",
    "EpisodeSetup",
    "RetrievalSimulator",
    "ToolBatch",
    "ToolSimulator",
    "answer_round",
    "open_groups",
]
