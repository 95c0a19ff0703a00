"""Passage corpora -> `Passage` records, streamed.

Two record layouts, told apart per record:
- the project's `{"title", "text"}` (an optional `id` is kept);
- FlashRAG / Search-R1's `{"id", "contents"}`, where `contents` is the title on its first line (in
  double quotes in wiki-18: `"Title"\\ntext`) and the text after it. This is `wiki18_100w`, the
  21M-passage Wikipedia corpus of Search-R1, ZeroSearch and FlashRAG.

Files are JSON lines (optionally gzipped), read a line at a time so that a corpus of any size streams
(`iter_passages`); a JSON array is also accepted but is read whole (small files only). A record that is
not JSON, lacks its fields, or a gzip stream cut short is a `DataError` naming the file and line; with
`skip_bad` such records are counted and skipped (a cut gzip stream always stops the reading).
A corpus is a retrieval collection, not questions: the 2WikiMultiHopQA corpus built from the dev
contexts is one.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError
from .fields import FieldError, req_str
from .source import RawRecord, read_records


@dataclass
class Passage:
    title: str
    text: str
    id: str = ""


@dataclass
class CorpusResult:
    passages: list[Passage]
    skipped: list[DataError] = field(default_factory=list)
    path: str = ""
    format: str = ""


def split_contents(contents: str) -> tuple[str, str]:
    """FlashRAG's `contents` -> (title, text): the first line, without its surrounding quotes, and the
    rest. A `contents` of one line is a title-less passage's text."""
    head, sep, rest = contents.partition("\n")
    if not sep:
        return "", contents.strip()
    return head.strip().strip('"').strip(), rest.strip()


def passage_of(value: Any) -> Passage:
    """One record as a `Passage`; a `FieldError` names the field at fault."""
    if not isinstance(value, Mapping):
        raise FieldError("", "not a JSON object")
    pid = value.get("id", "")
    pid = str(pid) if pid is not None else ""
    if "contents" in value and "text" not in value:
        title, text = split_contents(_utf8(req_str(value, "contents"), "contents"))
        return Passage(title=title, text=text, id=pid)
    title, text = _utf8(req_str(value, "title"), "title"), _utf8(req_str(value, "text"), "text")
    return Passage(title=title, text=text, id=_utf8(pid, "id"))


def _utf8(value: str, name: str) -> str:
    """`value`, unless JSON's `\\ud800`-style escapes left it holding a lone surrogate, which no file
    can store (an index would fail writing it)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FieldError(name, "holds a lone surrogate escape, not text") from None
    return value


def _error(path: str, where: str, exc: FieldError) -> DataError:
    return DataError(path, where, exc.field or None, exc.message)


def _open_lines(path: Path) -> tuple[io.BufferedIOBase, Iterator[bytes], Callable[[], int]]:
    """(the raw file, its lines as bytes, the bytes of the raw file read so far)."""
    raw = open(path, "rb")
    stream: io.BufferedIOBase = gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else raw
    return raw, iter(stream), raw.tell


def iter_passages(
    source: str | Path,
    *,
    skip_bad: bool = False,
    skipped: list[DataError] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Passage]:
    """The passages of a corpus file in file order, read a line at a time.

    A bad record raises `DataError` ("line N", 1-based) unless `skip_bad`, which appends it to
    `skipped` instead. `progress(n)` is told the bytes of the file read so far (compressed bytes for
    a gzipped file), every few thousand records.
    """
    path = Path(source)
    if not path.exists():
        raise DataError(path, None, None, "corpus file does not exist")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(2)
    except OSError as exc:
        raise DataError(path, None, None, f"cannot read file: {exc.strerror or exc}") from None
    gz = magic == b"\x1f\x8b"
    if gz and path.suffix != ".gz":
        raise DataError(path, None, None, "a gzip file must be named *.gz")
    first = _first_char(path)
    if first == "":
        raise DataError(path, None, None, "file is empty")
    if first == "[":
        yield from _array_passages(path, skip_bad, skipped)
        return
    if first != "{":
        raise DataError(path, "line 1", None, "neither JSON lines nor a JSON array (expected '{' or '[')")
    raw, lines, tell = _open_lines(path)
    lineno = 0
    try:
        while True:
            try:
                line = next(lines)
            except StopIteration:
                break
            except (OSError, EOFError, zlib.error) as exc:
                raise DataError(
                    path, f"line {lineno + 1}", None, f"the gzip stream is cut short or corrupt ({exc})"
                ) from None
            lineno += 1
            if progress is not None and lineno % 4096 == 0:
                progress(tell())
            if not line.strip():
                continue
            where = f"line {lineno}"
            try:
                value = json.loads(line.rstrip(b"\r\n"))
            except json.JSONDecodeError as exc:
                err = DataError(path, where, None, f"not valid JSON: {exc.msg} (column {exc.colno})")
            except UnicodeDecodeError as exc:
                err = DataError(path, where, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
            else:
                try:
                    yield passage_of(value)
                    continue
                except FieldError as exc:
                    err = _error(str(path), where, exc)
            if not skip_bad:
                raise err
            if skipped is not None:
                skipped.append(err)
    finally:
        if progress is not None:
            progress(tell())
        raw.close()


def _first_char(path: Path) -> str:
    """The file's first character that is not blank (a byte order mark aside), or "" when none."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            while True:
                chunk = fh.read(4096)
                if not chunk:
                    return ""
                stripped = chunk.removeprefix(b"\xef\xbb\xbf").lstrip()
                if stripped:
                    return chr(stripped[0])
    except (OSError, EOFError, zlib.error) as exc:
        kind = "gzip file" if path.suffix == ".gz" else "corpus file"
        raise DataError(path, None, None, f"not a readable {kind} ({exc})") from None


def _array_passages(path: Path, skip_bad: bool, skipped: list[DataError] | None) -> Iterator[Passage]:
    _, records = read_records(path)
    for raw in records:
        try:
            yield _passage(raw, str(path))
        except DataError as exc:
            if not skip_bad:
                raise
            if skipped is not None:
                skipped.append(exc)


def _passage(raw: RawRecord, path: str) -> Passage:
    if isinstance(raw.value, DataError):
        raise raw.value
    try:
        return passage_of(raw.value)
    except FieldError as exc:
        raise _error(path, raw.where, exc) from None


def load_corpus(source: str | Path, *, skip_bad: bool = False, limit: int | None = None) -> CorpusResult:
    """A whole corpus in memory (small corpora: the shipped sample, a test's); large ones stream
    through `iter_passages` into an index (`mtr index build`)."""
    path = Path(source)
    result = CorpusResult([], [], str(path), "corpus/" + ("jsonl" if _first_char(path) == "{" else "json"))
    for passage in iter_passages(path, skip_bad=skip_bad, skipped=result.skipped):
        if limit is not None and len(result.passages) >= limit:
            break
        result.passages.append(passage)
    return result
