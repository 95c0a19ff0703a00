"""Reading and writing trace JSONL files (one `Trace` per line, design §3).

Unlike `mtr_hpc.io.iter_jsonl`, which stops at the first malformed line, `read_traces(skip_bad=True)`
reads past bad lines and returns them as `DataError`s, so one corrupt record cannot hide a shard.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..io import atomic_write_jsonl, iter_jsonl_lines
from .model import TRACE_FIELDS, Trace

# (field, accepted types, may be null)
_FIELD_TYPES: dict[str, tuple[type | tuple[type, ...], bool]] = {
    "id": (str, False),
    "example_id": (str, False),
    "benchmark": (str, False),
    "tools": (list, False),
    "messages": (list, False),
    "answer": (str, True),
    "meta": (dict, False),
}


def record_problems(obj: Any) -> list[tuple[str | None, str]]:
    """(field, message) for each way a decoded JSON value is not a trace record."""
    if not isinstance(obj, dict):
        return [(None, f"a trace must be a JSON object, got {type(obj).__name__}")]
    out: list[tuple[str | None, str]] = []
    for name in TRACE_FIELDS:
        types, nullable = _FIELD_TYPES[name]
        if name not in obj:
            if name not in ("answer", "meta"):
                out.append((name, "missing"))
            continue
        value = obj[name]
        if value is None and nullable:
            continue
        if not isinstance(value, types):
            out.append((name, f"must be {types.__name__}, got {type(value).__name__}"))
    out += [(str(k), "unknown field") for k in obj if k not in TRACE_FIELDS]
    return out


def trace_from_dict(obj: Any, path: str | Path | None = None, where: str | None = None) -> Trace:
    """A `Trace` from a decoded record; a wrong record raises `DataError` naming its first bad field."""
    problems = record_problems(obj)
    if problems:
        fld, msg = problems[0]
        raise DataError(path, where, fld, msg)
    return Trace(**{k: obj[k] for k in TRACE_FIELDS if k in obj})


def iter_trace_lines(path: str | Path) -> Iterator[tuple[int, Any, DataError | None]]:
    """(line number, decoded value or None, JSON error or None) per non-blank line; never stops early."""
    return iter_jsonl_lines(path)


def read_traces(path: str | Path, skip_bad: bool = False) -> tuple[list[Trace], list[DataError]]:
    """All traces of a JSONL file. A bad line raises `DataError`, or with `skip_bad` is returned."""
    traces: list[Trace] = []
    errors: list[DataError] = []
    for lineno, obj, err in iter_trace_lines(path):
        try:
            if err is not None:
                raise err
            traces.append(trace_from_dict(obj, path, f"line {lineno}"))
        except DataError as exc:
            if not skip_bad:
                raise
            errors.append(exc)
    return traces, errors


def write_traces(path: str | Path, traces: Iterable[Trace]) -> int:
    """Write traces as JSONL atomically; returns the number written."""
    return atomic_write_jsonl(path, (t.to_dict() for t in traces))
