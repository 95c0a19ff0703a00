"""Offline trace synthesis (design §3-§5): ToolMaker, AutoAgent and ToolActor with grounded and llm backends.

Entry point for one example: `synthesize_example(example, cfg, agents)` (or `asynthesize_example` inside
an event loop). A shard runner builds `SynthAgents` once (sharing the tool library, the replay cache and
the distractor pool across examples) and calls it per example.
"""

from .autoagent import AutoAgent
from .classify import TaskType, classify_dataset, classify_rules
from .config import AutoAgentConfig, FilterConfig, SynthConfig, ToolActorConfig, ToolMakerConfig
from .evidence import EvidenceKB, build_kb
from .filtering import SynthAgents, Verdict, asynthesize_example, filter_trace, synthesize_example
from .retrieval import DistractorPool
from .sim_cache import SimCache
from .tool_library import ToolLibrary
from .toolactor import ToolActor, ToolState
from .toolmaker import ToolMaker, ToolSet, relation_tool
from .utility_tools import UTILITY_TOOLS

__all__ = [
    "UTILITY_TOOLS",
    "AutoAgent",
    "AutoAgentConfig",
    "DistractorPool",
    "EvidenceKB",
    "FilterConfig",
    "SimCache",
    "SynthAgents",
    "SynthConfig",
    "TaskType",
    "ToolActor",
    "ToolState",
    "ToolActorConfig",
    "ToolLibrary",
    "ToolMaker",
    "ToolMakerConfig",
    "ToolSet",
    "Verdict",
    "asynthesize_example",
    "build_kb",
    "classify_dataset",
    "classify_rules",
    "filter_trace",
    "relation_tool",
    "synthesize_example",
]
