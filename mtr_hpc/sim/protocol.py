"""The simulator boundary: one episode's tools and the function that answers their calls."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..data.example import QAExample
from ..trace.model import ToolSpec


@dataclass
class EpisodeSetup:
    """What one rollout needs besides the policy: the question, the tools shown, and the simulator.

    `call(name, arguments) -> observation` must never raise: a failed call is a typed error observation.
    """

    example: QAExample
    tools: list[ToolSpec]
    call: Callable[[str, dict[str, Any]], Any]


@runtime_checkable
class ToolSimulator(Protocol):
    def open(self, example: QAExample, seed: int) -> EpisodeSetup:
        """A new episode of `example`. Episodes opened with the same example and seed get the same
        tools, and the same call gets the same observation in each of them."""
        ...


def open_groups(
    simulator: ToolSimulator, examples: list[QAExample], group_size: int, seed: int
) -> list[EpisodeSetup]:
    """`group_size` episodes per example, group after group (the layout `group_advantages` expects).

    Members of a group share the tools and the simulation seed, so their rewards differ by their own
    choices only.
    """
    return [simulator.open(ex, seed) for ex in examples for _ in range(group_size)]
