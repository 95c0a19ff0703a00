"""FlashRAG records (`id, question, golden_answers`, optional `metadata`) -> `QAExample`, any benchmark.

FlashRAG re-publishes every benchmark in one JSONL layout; `golden_answers[0]` is the gold answer and
the rest are aliases. When a record carries `metadata` (FlashRAG keeps the source's extra fields there:
HotpotQA `type`/`level`/`context`, ...), the benchmark's own evidence and qtype readers map it, and the
fields it names in errors are prefixed with `metadata.`. Without metadata, qtype comes from what the
benchmark fixes on its own (Bamboogle "2hop", MuSiQue's hop count in the id), else None.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import bamboogle, hotpotqa, musique, twowiki
from .example import QAExample
from .fields import FieldError, dedupe, get, question, record_id, str_list

_READERS: dict[str, Any] = {
    "hotpotqa": hotpotqa,
    "musique": musique,
    "2wiki": twowiki,
    "bamboogle": bamboogle,
}


def _under_metadata(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except FieldError as exc:
        raise exc.under("metadata") from None


def convert(rec: Mapping[str, Any], index: int, benchmark: str) -> QAExample:
    reader = _READERS[benchmark]
    ex_id = record_id(rec, benchmark, index)
    answers = dedupe(str_list(get(rec, "golden_answers"), "golden_answers"))
    if not answers:
        raise FieldError("golden_answers", "is empty")
    meta = rec.get("metadata")
    if meta is not None and not isinstance(meta, Mapping):
        raise FieldError("metadata", "must be an object")
    if meta:
        evidence = _under_metadata(reader.evidence_of, meta)
        qtype = _under_metadata(reader.qtype_of, meta, ex_id)
    else:
        evidence = {}
        qtype = reader.qtype_of({}, ex_id) if benchmark in ("bamboogle", "musique") else None
    return QAExample(
        id=ex_id, benchmark=benchmark, question=question(rec), answers=answers, qtype=qtype, evidence=evidence
    )
