"""Atomic writes never leave a partial file; JSONL reading names the bad line."""

from __future__ import annotations

import json

import pytest

from mtr_hpc.errors import DataError
from mtr_hpc.io import atomic_write, atomic_write_jsonl, iter_jsonl, read_json


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.jsonl"
    atomic_write_jsonl(path, [{"a": 1}])

    def records():
        yield {"a": 2}
        raise RuntimeError("killed halfway")

    with pytest.raises(RuntimeError):
        atomic_write_jsonl(path, records())
    assert [obj for _, obj in iter_jsonl(path)] == [{"a": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temp file left behind


def test_atomic_write_creates_parents(tmp_path):
    with atomic_write(tmp_path / "a" / "b.txt") as fh:
        fh.write("x")
    assert (tmp_path / "a" / "b.txt").read_text() == "x"


def test_iter_jsonl_names_the_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"ok": 1}) + "\n\n{bad\n")
    it = iter_jsonl(path)
    assert next(it) == (1, {"ok": 1})
    with pytest.raises(DataError) as info:
        next(it)
    assert info.value.where == "line 3" and str(path) in str(info.value)


def test_unreadable_and_non_utf8(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        list(iter_jsonl(tmp_path / "missing.jsonl"))
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b'{"a": "\xe9"}')
    with pytest.raises(DataError, match="UTF-8"):
        read_json(bad)
    broken = tmp_path / "broken.json"
    broken.write_text('[{"a": 1},\n {"b": }]')
    with pytest.raises(DataError, match="line 2"):
        read_json(broken)
