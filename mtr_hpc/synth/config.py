"""Configs of the synthesis agents: one dataclass per component, nested in `SynthConfig`.

Defaults give the deterministic, LLM-free `grounded` pipeline (design §5), which is what tests, the
demo and the benchmark run; `llm` backends are selected per component.
"""

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
    max_tokens: int = 384
    temperature: float = 0.0
    # Replay cache file (JSONL); empty keeps the cache in memory only.
    cache_path: str = ""
    # Skip per-call validation of grounded observations of template tools (built in their exact shape;
    # `validate_trace` still checks every observation of a kept trace).
    trust_templates: bool = True


@dataclass
class AutoAgentConfig:
    backend: Literal["grounded", "llm"] = "grounded"
    max_turns: int = 8
    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 1.0


@dataclass
class FilterConfig:
    max_turns: int = 8
    # Reject "wrong_answer" when EM < min_em and F1 < min_f1 (either passing keeps the trace).
    min_em: float = 1.0
    min_f1: float = 1.0
    # Reject a (non yes/no) answer that appears in no observation.
    require_grounded: bool = True


@dataclass
class SynthConfig:
    benchmark: str = "hotpotqa"
    # Benchmark file; empty means the sample shipped with the package.
    data_path: str = ""
    limit: int = 0
    seed: int = 0
    toolmaker: ToolMakerConfig = field(default_factory=ToolMakerConfig)
    toolactor: ToolActorConfig = field(default_factory=ToolActorConfig)
    autoagent: AutoAgentConfig = field(default_factory=AutoAgentConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    # Tool library file (JSONL); empty keeps it in memory.
    tool_library: str = ""
    # Model name of `llm` backends (recorded in trace meta; the client is built by the caller).
    model: str = ""
