"""Passage corpora (`[{"title", "text"}]`, JSON array or JSON lines) -> `Passage` list.

A corpus is a retrieval collection, not questions: the 2WikiMultiHopQA corpus built from the dev
contexts is one. It is read with the same file reader and the same bad-record rules as benchmarks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .fields import FieldError, req_str
from .source import RawRecord, read_records


@dataclass
class Passage:
    title: str
    text: str


@dataclass
class CorpusResult:
    passages: list[Passage]
    skipped: list[DataError] = field(default_factory=list)
    path: str = ""
    format: str = ""


def _passage(raw: RawRecord, path: str) -> Passage:
    if isinstance(raw.value, DataError):
        raise raw.value
    if not isinstance(raw.value, Mapping):
        raise DataError(path, raw.where, None, "not a JSON object")
    try:
        return Passage(title=req_str(raw.value, "title"), text=req_str(raw.value, "text"))
    except FieldError as exc:
        raise DataError(path, raw.where, exc.field, exc.message) from None


def load_corpus(source: str | Path, *, skip_bad: bool = False, limit: int | None = None) -> CorpusResult:
    path = Path(source)
    container, records = read_records(path)
    result = CorpusResult([], [], str(path), f"corpus/{container}")
    for raw in records:
        if limit is not None and len(result.passages) >= limit:
            break
        try:
            result.passages.append(_passage(raw, str(path)))
        except DataError as exc:
            if not skip_bad:
                raise
            result.skipped.append(exc)
    return result
