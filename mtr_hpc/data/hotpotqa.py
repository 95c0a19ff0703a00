"""HotpotQA records -> `QAExample`, plus the context/supporting-facts parsing 2WikiMultiHopQA shares.

Accepted record layouts:
- official distractor / fullwiki: `_id, question, answer, type, level, supporting_facts, context` with
  `context = [[title, [sentence, ...]], ...]` and `supporting_facts = [[title, sentence_index], ...]`;
- the Hugging Face `hotpot_qa` layout: `id` instead of `_id`, `context = {"title": [...], "sentences":
  [[...], ...]}` and `supporting_facts = {"title": [...], "sent_id": [...]}`;
- the id-less question/answer(/type) list (ids become `hotpotqa-<index>`).

Evidence: `paragraphs` [{"title", "text", "sentences", "is_supporting"}] where `text` is the sentences
joined (they carry their own leading spaces) and `is_supporting` says whether the title occurs in
`supporting_facts`; `supporting_facts` [[title, sentence_index]]; `level` (easy/medium/hard).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .example import QAExample
from .fields import FieldError, as_int, as_list, as_str, get, opt_str, question, record_id, req_str, str_list


def _pairs_from_columns(value: Mapping[str, Any], field: str, left: str, right: str) -> list[list[Any]]:
    """The HF column layout {left: [...], right: [...]} as a list of [left, right] pairs."""
    lefts = as_list(get(value, left, prefix=field), f"{field}.{left}")
    rights = as_list(get(value, right, prefix=field), f"{field}.{right}")
    if len(lefts) != len(rights):
        raise FieldError(field, f"'{left}' has {len(lefts)} items but '{right}' has {len(rights)}")
    return [[a, b] for a, b in zip(lefts, rights, strict=True)]


def parse_context(value: Any, field: str = "context") -> list[tuple[str, list[str]]]:
    """`context` as (title, sentences) pairs, from the official list or the HF column layout."""
    if isinstance(value, Mapping):
        value = _pairs_from_columns(value, field, "title", "sentences")
    items = as_list(value, field)
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise FieldError(f"{field}[{i}]", "must be a [title, sentences] pair")
        title = as_str(item[0], f"{field}[{i}][0]")
        out.append((title, str_list(item[1], f"{field}[{i}][1]")))
    return out


def parse_supporting_facts(value: Any, field: str = "supporting_facts") -> list[list[Any]]:
    """`supporting_facts` as [title, sentence_index] pairs, from the official or the HF layout."""
    if isinstance(value, Mapping):
        value = _pairs_from_columns(value, field, "title", "sent_id")
    items = as_list(value, field)
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise FieldError(f"{field}[{i}]", "must be a [title, sentence_index] pair")
        out.append([as_str(item[0], f"{field}[{i}][0]"), as_int(item[1], f"{field}[{i}][1]")])
    return out


def join_sentences(sentences: list[str]) -> str:
    # Official sentences after the first start with a space; a source that stripped them gets one back.
    parts = [s if i == 0 or s[:1].isspace() else " " + s for i, s in enumerate(sentences)]
    return "".join(parts).strip()


def context_evidence(rec: Mapping[str, Any]) -> dict[str, Any]:
    """`paragraphs` and `supporting_facts` of a record in the HotpotQA context layout (either may be absent)."""
    evidence: dict[str, Any] = {}
    facts = None
    if get(rec, "supporting_facts", required=False) is not None:
        facts = parse_supporting_facts(rec["supporting_facts"])
        evidence["supporting_facts"] = facts
    if get(rec, "context", required=False) is not None:
        supporting = {title for title, _ in facts or []}
        evidence["paragraphs"] = [
            {
                "title": title,
                "text": join_sentences(sentences),
                "sentences": sentences,
                "is_supporting": title in supporting,
            }
            for title, sentences in parse_context(rec["context"])
        ]
    return evidence


def evidence_of(rec: Mapping[str, Any]) -> dict[str, Any]:
    evidence = context_evidence(rec)
    level = opt_str(rec, "level")
    if level is not None:
        evidence["level"] = level
    return evidence


def qtype_of(rec: Mapping[str, Any], example_id: str) -> str | None:
    return opt_str(rec, "type")


def convert(rec: Mapping[str, Any], index: int) -> QAExample:
    ex_id = record_id(rec, "hotpotqa", index)
    return QAExample(
        id=ex_id,
        benchmark="hotpotqa",
        question=question(rec),
        answers=[req_str(rec, "answer")],
        qtype=qtype_of(rec, ex_id),
        evidence=evidence_of(rec),
    )
