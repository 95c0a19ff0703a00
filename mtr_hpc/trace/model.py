"""The trace record (design §3): one synthesized or sampled ReAct episode as OpenAI chat messages.

Messages stay plain dicts in the OpenAI chat format, so traces round-trip through JSONL unchanged and
can be handed to any OpenAI-compatible client or chat template as they are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

Message = dict[str, Any]
ToolSpec = dict[str, Any]

TRACE_FIELDS = ("id", "example_id", "benchmark", "tools", "messages", "answer", "meta")


@dataclass
class Trace:
    id: str
    example_id: str
    benchmark: str
    tools: list[ToolSpec]
    messages: list[Message]
    answer: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
