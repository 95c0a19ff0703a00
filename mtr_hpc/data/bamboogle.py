"""Bamboogle records -> `QAExample`.

Accepted record layout: the Self-Ask release with its decomposition, `Question, Answer, Q1, A1, Q2, A2`
(sub-answers are lists of strings; a lone string is accepted), and any further `Qn/An` pairs. Ids are
`bamboogle-<index>` (the release has none). The FlashRAG layout of Bamboogle goes through `flashrag`.

Evidence: `decomposition` [{"question", "answer", "answers"}], where `answer` is the first sub-answer
and `answers` all of them. Only `Answer` is a gold answer: the last step's sub-answers are not aliases
(some disagree with it). qtype is "2hop": every Bamboogle question is a two-step composition.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .example import QAExample
from .fields import FieldError, question, record_id, req_str, str_list

QTYPE = "2hop"


def _key(rec: Mapping[str, Any], upper: str) -> str:
    """Self-Ask capitalizes its keys; lower-case copies of the file exist too."""
    return upper if upper in rec else upper.lower()


def parse_decomposition(rec: Mapping[str, Any]) -> list[dict[str, Any]]:
    steps = []
    n = 1
    while f"Q{n}" in rec or f"q{n}" in rec:
        q_key, a_key = _key(rec, f"Q{n}"), _key(rec, f"A{n}")
        if a_key not in rec:
            raise FieldError(f"A{n}", f"is missing (Q{n} has no answer)")
        sub_question = req_str(rec, q_key)
        answers = str_list(rec[a_key], a_key, allow_scalar=True)
        if not answers:
            raise FieldError(a_key, "is empty")
        steps.append({"question": sub_question, "answer": answers[0], "answers": answers})
        n += 1
    return steps


def evidence_of(rec: Mapping[str, Any]) -> dict[str, Any]:
    steps = parse_decomposition(rec)
    return {"decomposition": steps} if steps else {}


def qtype_of(rec: Mapping[str, Any], example_id: str) -> str | None:
    return QTYPE


def convert(rec: Mapping[str, Any], index: int) -> QAExample:
    ex_id = record_id(rec, "bamboogle", index)
    return QAExample(
        id=ex_id,
        benchmark="bamboogle",
        question=question(rec, _key(rec, "Question")),
        answers=[req_str(rec, _key(rec, "Answer"))],
        qtype=qtype_of(rec, ex_id),
        evidence=evidence_of(rec),
    )
