"""The simulator boundary: one episode's tools and the function that answers their calls.

Answering calls one at a time suits simulators that compute their observations (grounded,
retrieval). A model that plays the tools answers best in batches, so its episodes carry a `batch`:
`answer_round` sends every call a turn round made, across all episodes, to their batches together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..data.example import QAExample
from ..trace.model import ToolSpec


@runtime_checkable
class ToolBatch(Protocol):
    def answer(self, requests: list[tuple[Any, str, dict[str, Any]]]) -> list[Any]:
        """Observations of `(episode state, tool name, arguments)` requests, in order; never raises
        for what the tool model does (a failed call is a typed error observation)."""
        ...


@dataclass
class EpisodeSetup:
    """What one rollout needs besides the policy: the question, the tools shown, and the simulator.

    `call(name, arguments) -> observation` must never raise: a failed call is a typed error observation.
    `batch` and `state`, when set, answer the same calls in batches (`answer_round`).
    """

    example: QAExample
    tools: list[ToolSpec]
    call: Callable[[str, dict[str, Any]], Any]
    batch: ToolBatch | None = None
    state: Any = None


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


def answer_round(requests: list[tuple[EpisodeSetup, str, dict[str, Any]]]) -> list[Any]:
    """Observations of every `(episode, tool name, arguments)` call of one turn round, in order.

    Calls of episodes with a `batch` go to it in one `answer` (each batch once); the others are
    answered one by one. One episode's calls keep their order.
    """
    out: list[Any] = [None] * len(requests)
    batches: dict[int, tuple[ToolBatch, list[int]]] = {}
    for i, (setup, name, args) in enumerate(requests):
        if setup.batch is None:
            out[i] = setup.call(name, args)
        else:
            batches.setdefault(id(setup.batch), (setup.batch, []))[1].append(i)
    for batch, idx in batches.values():
        answers = batch.answer([(requests[i][0].state, requests[i][1], requests[i][2]) for i in idx])
        for i, obs in zip(idx, answers, strict=True):
            out[i] = obs
    return out
