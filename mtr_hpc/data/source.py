"""Reading raw records from a local benchmark file, JSON array or JSON lines, told apart by content.

A `.gz` file is decompressed first. A file whose first non-blank character is `[` is a JSON array
(records are located as "record N", 0-based); one starting with `{` is JSON lines ("line N", 1-based).
A malformed JSON line does not stop the reading: it is yielded as a `DataError` in place of its record,
so the loader can skip it (`skip_bad`) or raise it. A malformed JSON array cannot be read past its
first syntax error and always raises.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError

HUB_PREFIX = "hf://"
# A hub dataset name: "owner/name" (optionally ":config"), with no file extension and no path parts.
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w.-]+)?$")
_FILE_SUFFIXES = (".json", ".jsonl", ".gz", ".txt")


@dataclass
class RawRecord:
    """One record of a file: its 0-based index, where it is ("line 3" / "record 2") and its value.

    `value` is the parsed JSON value, or the `DataError` of a line that is not JSON.
    """

    index: int
    where: str
    value: Any


def is_hub_source(source: str | Path) -> bool:
    """`hf://owner/name[:config]`, or a bare `owner/name` that is not an existing local path."""
    if isinstance(source, Path):
        return False
    if source.startswith(HUB_PREFIX):
        return True
    return (
        bool(_HUB_NAME.match(source))
        and not source.lower().endswith(_FILE_SUFFIXES)
        and not Path(source).exists()
    )


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, None, None, "file not found") from None
    except OSError as exc:
        raise DataError(path, None, None, f"cannot read file: {exc.strerror or exc}") from None
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(path, None, None, f"not a readable gzip file ({exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(path, None, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_records(path: Path) -> tuple[str, Iterator[RawRecord]]:
    """("json" | "jsonl", the file's records in order). Raises `DataError` for unreadable/empty files."""
    text = _read_text(path)
    head = text.lstrip()[:1]
    if not head:
        raise DataError(path, None, None, "file is empty")
    if head == "[":
        return "json", _array_records(path, text)
    if head == "{":
        return "jsonl", _line_records(path, text)
    raise DataError(path, "line 1", None, "neither a JSON array nor JSON lines (expected '[' or '{')")


def _array_records(path: Path, text: str) -> Iterator[RawRecord]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"line {exc.lineno}", None, f"not valid JSON ({exc.msg})") from None
    return (RawRecord(i, f"record {i}", value) for i, value in enumerate(values))


def _line_records(path: Path, text: str) -> Iterator[RawRecord]:
    index = 0
    # split on "\n" only: str.splitlines would also split inside strings holding U+2028 and friends.
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = f"line {lineno}"
        try:
            value: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            value = DataError(path, where, None, f"not valid JSON ({exc.msg} at column {exc.colno})")
        yield RawRecord(index, where, value)
        index += 1
