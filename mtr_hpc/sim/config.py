"""Configs of the tool simulators' parts: the ToolMaker (which tools an episode gets), the ToolActor
(what answers them) and the retrieval environment. Synthesis, GRPO and evaluation nest them in their
own configs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class ToolMakerConfig:
    backend: Literal["template", "llm"] = "template"
    # `dataset` trusts the benchmark's qtype where it has one and falls back to rules.
    classifier: Literal["dataset", "rules", "llm"] = "dataset"
    utility_tools: list[str] = field(default_factory=lambda: ["search", "open_page", "compare"])
    # Times an `llm` interface that fails validation is re-requested before the template is used.
    llm_retries: int = 2
    max_tokens: int = 512
    temperature: float = 0.0


@dataclass
class ToolActorConfig:
    backend: Literal["grounded", "llm"] = "grounded"
    # Three passages, as Search-R1 retrieves: each one costs every later turn its tokens.
    search_top_k: int = 3
    # Passages of other examples mixed into each example's search corpus as distractors.
    n_distractors: int = 4
    snippet_sentences: int = 2
    # `llm`: the example's evidence is shown to the simulator as a hint.
    evidence_hint: bool = True
    llm_retries: int = 2
    # A tool request unanswered after this long is retried, then an `llm_error` observation. 0: no limit
    # here; an endpoint's client has its own (`timeout_s` of its LLM config), and a model in this process
    # always finishes (a timed-out request would only queue its retry behind itself).
    llm_timeout_s: float = 0.0
    max_tokens: int = 384
    temperature: float = 0.0
    # Replay cache file (JSONL); empty keeps the cache in memory only.
    cache_path: str = ""
    # Skip per-call validation of grounded observations of template tools (built in their exact shape;
    # `validate_trace` still checks every observation of a kept trace).
    trust_templates: bool = True


@dataclass
class RetrievalEnvConfig:
    """The `retrieval` environment: BM25 over a local passage corpus (JSON/JSONL of {title, text}, or
    gzipped). `sample` is the corpus shipped in the package: the 2WikiMultiHopQA passages and the HotpotQA
    sample's context paragraphs (MuSiQue and Bamboogle have none in it)."""

    corpus: str = "sample"
    top_k: int = 3  # as the grounded simulator (`ToolActorConfig.search_top_k`)
    snippet_sentences: int = 2
    # Malformed corpus records are an error unless this is set (then they are skipped and counted).
    skip_bad: bool = False
