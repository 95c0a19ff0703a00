"""2WikiMultiHopQA records -> `QAExample`.

Accepted record layouts:
- official (`dev.json`): `_id, type, question, context, supporting_facts, evidences, answer` (+ optional
  `answer_id`, `entity_ids`, `evidences_id`); `context` and `supporting_facts` as in HotpotQA (the HF
  column layout is accepted too);
- the same without `context` (the 4000-question subset in the shared data);
- the id-less question/answer list (ids become `2wiki-<index>`).

Evidence: `paragraphs` and `supporting_facts` exactly as for HotpotQA, `triples` [[subject, relation,
object]] from `evidences`, `answer_id` (the Wikidata id of the answer) when the source has one.
qtype is the official `type`: comparison / inference / compositional / bridge_comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .example import QAExample
from .fields import FieldError, as_list, get, opt_str, question, record_id, req_str, str_list
from .hotpotqa import context_evidence


def parse_triples(value: Any, field: str = "evidences") -> list[list[str]]:
    out = []
    for i, item in enumerate(as_list(value, field)):
        triple = str_list(item, f"{field}[{i}]")
        if len(triple) != 3:
            raise FieldError(
                f"{field}[{i}]", f"must be a [subject, relation, object] triple, got {len(triple)} items"
            )
        out.append(triple)
    return out


def evidence_of(rec: Mapping[str, Any]) -> dict[str, Any]:
    evidence = context_evidence(rec)
    if get(rec, "evidences", required=False) is not None:
        evidence["triples"] = parse_triples(rec["evidences"])
    answer_id = opt_str(rec, "answer_id")
    if answer_id is not None:
        evidence["answer_id"] = answer_id
    return evidence


def qtype_of(rec: Mapping[str, Any], example_id: str) -> str | None:
    return opt_str(rec, "type")


def convert(rec: Mapping[str, Any], index: int) -> QAExample:
    ex_id = record_id(rec, "2wiki", index)
    return QAExample(
        id=ex_id,
        benchmark="2wiki",
        question=question(rec),
        answers=[req_str(rec, "answer")],
        qtype=qtype_of(rec, ex_id),
        evidence=evidence_of(rec),
    )
