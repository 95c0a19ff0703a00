"""Configs of the synthesis agents: one dataclass per component, nested in `SynthConfig`.

Defaults give the deterministic, LLM-free `grounded` pipeline (design §5), which is what tests, the
demo and the benchmark run; `llm` backends are selected per component.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..sim.config import ToolActorConfig, ToolMakerConfig


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
