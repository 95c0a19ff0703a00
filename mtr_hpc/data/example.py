"""`QAExample`: one benchmark question, the record every loader produces (design §3)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

BENCHMARKS = ("hotpotqa", "musique", "2wiki", "bamboogle")


@dataclass
class QAExample:
    """One question of a benchmark.

    `answers[0]` is the gold answer as the source gives it; the rest are aliases (MuSiQue's
    `answer_aliases`, FlashRAG's extra `golden_answers`). `evidence` holds what the source has:
    `paragraphs` ([{"title", "text", "is_supporting"}]), `supporting_facts` ([[title, sent_idx]]),
    `decomposition` ([{"question", "answer", ...}]), `triples` ([[subject, relation, object]]).
    """

    id: str
    benchmark: str
    question: str
    answers: list[str]
    qtype: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def answer(self) -> str:
        return self.answers[0] if self.answers else ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QAExample:
        return cls(
            id=str(d["id"]),
            benchmark=d["benchmark"],
            question=d["question"],
            answers=list(d["answers"]),
            qtype=d.get("qtype"),
            evidence=dict(d.get("evidence") or {}),
        )


def example_key(benchmark: str, example_id: str) -> str:
    """`benchmark:id`, the key that names one question across files, shards and runs."""
    return f"{benchmark}:{example_id}"
