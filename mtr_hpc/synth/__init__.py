"""Offline trace synthesis (design §3-§5): ToolMaker, AutoAgent and ToolActor with grounded and llm backends.

The AutoAgent (`autoagent`, with its grounded `plans` and `narrate`), the filter and the shard runner
live here; the ToolMaker and the ToolActor are the tool simulator's parts (`mtr_hpc.sim`), re-exported
here as the other two agents. Entry point for one example: `synthesize_example(example, cfg, agents)` (or `asynthesize_example` inside
an event loop). A shard runner builds `SynthAgents` once (sharing the tool library, the replay cache and
the distractor pool across examples) and calls it per example.
"""

from ..sim.classify import TaskType, classify_dataset, classify_rules
from ..sim.evidence import EvidenceKB, build_kb
from ..sim.retrieval import DistractorPool
from ..sim.sim_cache import SimCache
from ..sim.tool_library import ToolLibrary
from ..sim.toolactor import ToolActor, ToolState
from ..sim.toolmaker import ToolMaker, ToolSet, relation_tool
from ..sim.utility_tools import UTILITY_TOOLS
from .autoagent import AutoAgent
from .config import AutoAgentConfig, FilterConfig, SynthConfig, ToolActorConfig, ToolMakerConfig
from .filtering import SynthAgents, Verdict, asynthesize_example, filter_trace, synthesize_example

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
