"""One multi-turn rollout: what it records, and the retokenization-drift check.

An `Episode` keeps two views of the same rollout:

- the trainer's view, token in / token out: `token_ids` = the prompt, every sampled turn exactly as
  sampled, and the observations the environment appended; `loss_mask` is 1 exactly on sampled ids;
  `engine_logprobs` are the engine's logprobs of those ids (0 where the mask is 0);
- the OpenAI `messages` it implies (design §3), parsed from the decoded turns: what is scored by the
  reward, saved as a trace and shown to people.

`check_drift` re-renders the messages and compares them with the token ids. The trainer never uses the
re-render, so drift does not bias training; it measures how faithfully the messages describe what was
sampled. Kinds: `format` (the sampled text is not the canonical rendering of its own parse, e.g. a
call's JSON written with other spacing: the messages hold the normalized form), `tokenization` (same
text, but the policy sampled a token split the tokenizer would not produce), `unrenderable` (the
messages cannot be rendered, e.g. a sampled ChatML marker), and `structure` (every turn agrees but the
sequences differ: an environment bug; must be 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..data.example import QAExample
from ..errors import DataError
from ..trace.model import Message, ToolSpec, Trace

FINISH_REASONS = ("answer", "max_turns", "max_tokens", "parse_error", "engine_length", "repeated_call")
DRIFT_KINDS = ("format", "tokenization", "unrenderable", "structure")


@dataclass
class Episode:
    """A finished (or running) rollout; see the module docstring for the two views it keeps."""

    example: QAExample
    tools: list[ToolSpec]
    messages: list[Message]
    token_ids: list[int]
    loss_mask: list[int]
    engine_logprobs: list[float]
    prompt_len: int
    turns: int = 0
    tool_calls: int = 0
    invalid_calls: int = 0
    answer: str | None = None
    finish: str | None = None  # one of FINISH_REASONS once finished
    n_generated: int = 0
    error: str | None = None  # why a `parse_error` episode ended (the first issue code and message)
    # [start, end) of every sampled turn in token_ids, and whether it ended with the end-of-turn token.
    turn_spans: list[tuple[int, int]] = field(default_factory=list)
    turn_closed: list[bool] = field(default_factory=list)

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    def trace(self, trace_id: str | None = None, meta: dict[str, Any] | None = None) -> Trace:
        ex = self.example
        info = {"finish": self.finish, "turns": self.turns, "n_generated": self.n_generated}
        if self.error:
            info["error"] = self.error
        return Trace(
            trace_id or f"{ex.benchmark}:{ex.id}:rollout",
            ex.id,
            ex.benchmark,
            list(self.tools),
            list(self.messages),
            self.answer,
            {**info, **(meta or {})},
        )


@dataclass
class DriftReport:
    drifted: bool
    kind: str | None = None  # one of DRIFT_KINDS when drifted
    turn: int | None = None  # the first assistant turn that differs


def _decode(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def check_drift(episode: Episode, renderer) -> DriftReport:
    """Compare `renderer.render(episode.messages)` (less the trailing separator, and less the
    end-of-turn token of a last turn cut off before it) with `episode.token_ids`."""
    try:
        rendered = renderer.render(episode.messages, episode.tools).input_ids
    except DataError:
        return DriftReport(True, "unrenderable")
    sep = list(renderer.turn_separator_ids)
    if sep and rendered[-len(sep) :] == sep:
        rendered = rendered[: -len(sep)]
    if episode.turn_closed and not episode.turn_closed[-1] and rendered[-1:] == [renderer.end_of_turn_id]:
        rendered = rendered[:-1]
    if rendered == episode.token_ids:
        return DriftReport(False)
    assistant = [m for m in episode.messages if m.get("role") == "assistant"]
    for k, ((start, end), msg) in enumerate(zip(episode.turn_spans, assistant, strict=False)):
        sampled = episode.token_ids[start:end]
        body = sampled[:-1] if episode.turn_closed[k] else sampled
        text = renderer.assistant_turn_text(msg)
        if _decode(renderer.tokenizer, body) != text:
            return DriftReport(True, "format", k)
        if body != renderer.tokenizer.encode(text, add_special_tokens=False):
            return DriftReport(True, "tokenization", k)
    return DriftReport(True, "structure")


def drift_metrics(episodes: list[Episode], renderer, prefix: str = "grpo/") -> dict[str, int]:
    """`retokenization_drift` (episodes whose messages do not re-render to their token ids) and its
    breakdown by kind; `drift_structure` must stay 0."""
    return drift_counts([check_drift(ep, renderer).kind for ep in episodes], prefix)


def drift_counts(kinds: list[str | None], prefix: str = "grpo/") -> dict[str, int]:
    """`drift_metrics` from each episode's drift kind (None: no drift)."""
    counts = {k: sum(kind == k for kind in kinds) for k in DRIFT_KINDS}
    out = {f"{prefix}retokenization_drift": sum(counts.values())}
    out.update({f"{prefix}drift_{k}": v for k, v in counts.items()})
    return out
