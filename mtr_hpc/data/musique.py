"""MuSiQue records -> `QAExample`.

Accepted record layout: the official JSONL (`musique_ans_v1.0_*.jsonl`, `musique_full_*`): `id, question,
answer, answer_aliases, answerable, question_decomposition`, and `paragraphs` [{idx, title,
paragraph_text, is_supporting}], which may be absent (the shared dev file dropped them). The HF mirrors
use the same fields.

Evidence: `paragraphs` [{"title", "text", "is_supporting", "idx"}] (`idx` is what a decomposition
step's `paragraph_support_idx` points at); `decomposition` [{"question", "answer",
"paragraph_support_idx", "id", "document_id", ...}] (every key of the official step is kept);
`answerable` (always true in MuSiQue-Ans, false for the unanswerable half of MuSiQue-Full).
answers = answer + answer_aliases. qtype is the hop count of the id prefix ("3hop1__..." -> "3hop").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .example import QAExample
from .fields import (
    FieldError,
    as_bool,
    as_int,
    as_list,
    as_str,
    dedupe,
    get,
    question,
    record_id,
    req_str,
    str_list,
)

_HOPS = re.compile(r"^(\d+)hop")


def hops_of_id(example_id: str) -> str | None:
    match = _HOPS.match(example_id)
    return f"{match.group(1)}hop" if match else None


def _object(item: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(item, Mapping):
        raise FieldError(field, "must be an object")
    return item


def parse_paragraphs(value: Any, field: str = "paragraphs") -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate(as_list(value, field)):
        where = f"{field}[{i}]"
        p = _object(item, where)
        para: dict[str, Any] = {
            "title": as_str(get(p, "title", prefix=where), f"{where}.title"),
            "text": as_str(get(p, "paragraph_text", prefix=where), f"{where}.paragraph_text"),
            "is_supporting": as_bool(p.get("is_supporting", False), f"{where}.is_supporting"),
        }
        if p.get("idx") is not None:
            para["idx"] = as_int(p["idx"], f"{where}.idx")
        out.append(para)
    return out


def parse_decomposition(value: Any, field: str = "question_decomposition") -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate(as_list(value, field)):
        where = f"{field}[{i}]"
        step = dict(_object(item, where))
        step["question"] = as_str(get(step, "question", prefix=where), f"{where}.question")
        step["answer"] = as_str(get(step, "answer", prefix=where), f"{where}.answer")
        if step.get("paragraph_support_idx") is not None:
            as_int(step["paragraph_support_idx"], f"{where}.paragraph_support_idx")
        out.append(step)
    return out


def evidence_of(rec: Mapping[str, Any]) -> dict[str, Any]:
    evidence: dict[str, Any] = {}
    if rec.get("paragraphs") is not None:
        evidence["paragraphs"] = parse_paragraphs(rec["paragraphs"])
    if rec.get("question_decomposition") is not None:
        evidence["decomposition"] = parse_decomposition(rec["question_decomposition"])
    if rec.get("answerable") is not None:
        evidence["answerable"] = as_bool(rec["answerable"], "answerable")
    return evidence


def qtype_of(rec: Mapping[str, Any], example_id: str) -> str | None:
    return hops_of_id(example_id)


def answers_of(rec: Mapping[str, Any]) -> list[str]:
    aliases = rec.get("answer_aliases")
    extra = [] if aliases is None else str_list(aliases, "answer_aliases")
    return dedupe([req_str(rec, "answer"), *extra])


def convert(rec: Mapping[str, Any], index: int) -> QAExample:
    ex_id = record_id(rec, "musique", index)
    return QAExample(
        id=ex_id,
        benchmark="musique",
        question=question(rec),
        answers=answers_of(rec),
        qtype=qtype_of(rec, ex_id),
        evidence=evidence_of(rec),
    )
