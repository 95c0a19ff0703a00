"""Rollout engines behind one protocol: transformers (embedded default, CPU or GPU) and vLLM (scale).

Importing this package imports neither torch nor vLLM; the engines load on first attribute access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .protocol import Generation, RolloutEngine, SamplingParams

if TYPE_CHECKING:
    from .hf_engine import HFRolloutEngine
    from .vllm_engine import VLLMRolloutEngine

__all__ = ["Generation", "HFRolloutEngine", "RolloutEngine", "SamplingParams", "VLLMRolloutEngine"]


def __getattr__(name: str):
    if name == "HFRolloutEngine":
        from .hf_engine import HFRolloutEngine

        return HFRolloutEngine
    if name == "VLLMRolloutEngine":
        from .vllm_engine import VLLMRolloutEngine

        return VLLMRolloutEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
