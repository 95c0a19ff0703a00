"""Atomic file writes and line-numbered JSON(L) reading.

Every output file of the project is written through `atomic_write` (temp file in the same directory,
fsync, rename), so a killed process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import DataError


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temp file beside `path`; on success fsync and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp creates 0600 files; give the result the permissions an ordinary open() would.
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        with os.fdopen(fd, mode, encoding=encoding if "b" not in mode else None) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_write(path) as fh:
        fh.write(text)


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    with atomic_write(path) as fh:
        json.dump(obj, fh, indent=indent, ensure_ascii=False)
        fh.write("\n")


def atomic_write_jsonl(path: str | Path, records: Iterable[Any]) -> int:
    n = 0
    with atomic_write(path) as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


def iter_jsonl_lines(path: str | Path) -> Iterator[tuple[int, Any, DataError | None]]:
    """(1-based line number, parsed value or None, error or None) per non-blank line; never stops at a
    malformed line, so a caller can count bad lines and go on. An unreadable file raises `DataError`."""
    path = Path(path)
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise DataError(path, None, None, f"cannot read file: {exc.strerror or exc}") from exc
    with fh:
        try:
            # Iterating the file splits on newlines only; str.splitlines would also split inside
            # JSON strings holding U+2028 and friends, which json.dumps leaves unescaped.
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield lineno, json.loads(line), None
                except (ValueError, RecursionError) as exc:
                    msg = f"not valid JSON ({exc})"[:300]
                    yield lineno, None, DataError(path, f"line {lineno}", None, msg)
        except UnicodeDecodeError as exc:
            raise DataError(path, None, None, f"not UTF-8 text ({exc.reason})") from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield (1-based line number, parsed object) for each non-blank line.

    A line that is not JSON raises `DataError` naming the file and line. A final line without a
    newline is read like any other (a file written atomically never has a truncated one).
    """
    for lineno, obj, err in iter_jsonl_lines(path):
        if err is not None:
            raise err
        yield lineno, obj


def read_json(path: str | Path) -> Any:
    """Parse a whole JSON file, turning OS and syntax errors into `DataError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(path, None, None, f"cannot read file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(path, None, None, f"not UTF-8 text ({exc.reason})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"line {exc.lineno}", None, f"not valid JSON ({exc.msg})") from None
