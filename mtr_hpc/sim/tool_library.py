"""The persistent, deduplicated tool library of the ToolMaker.

One entry per key ("relation:director", "utility:search"): the interface, how many examples used it
and which backend wrote it. The first interface made for a key is kept, so the same relation yields the
same tool across examples (and across shards, after `merge`). Saved as JSONL, atomically; `merge` sums
usage counts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..io import atomic_write_jsonl, iter_jsonl
from ..toolspec import tool_name, validate_tool

# Upper bounds of the usage-count buckets of the frequency report.
_BUCKETS = ((1, "1"), (4, "2-4"), (9, "5-9"), (99, "10-99"))


@dataclass
class LibraryEntry:
    key: str
    tool: dict[str, Any]
    count: int = 0
    origin: str = "template"

    @property
    def name(self) -> str:
        return tool_name(self.tool) or ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "count": self.count,
            "origin": self.origin,
            "tool": self.tool,
        }


class ToolLibrary:
    def __init__(self) -> None:
        self.entries: dict[str, LibraryEntry] = {}
        self._names: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def get(self, key: str) -> LibraryEntry | None:
        return self.entries.get(key)

    def name_taken(self, name: str, key: str) -> bool:
        """Whether `name` already belongs to a different key (two relations must not share a name)."""
        return self._names.get(name, key) != key

    def add(self, key: str, tool: dict[str, Any], origin: str = "template", count: int = 0) -> LibraryEntry:
        """The entry of `key`, created with `tool` if new; an existing entry keeps its interface."""
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = LibraryEntry(key, tool, 0, origin)
            self._names.setdefault(entry.name, key)
        entry.count += count
        return entry

    def use(self, key: str) -> None:
        self.entries[key].count += 1

    def merge(self, other: ToolLibrary) -> ToolLibrary:
        """Add `other`'s entries into this library (counts summed; this library's interface wins)."""
        for key, entry in other.entries.items():
            self.add(key, entry.tool, entry.origin, entry.count)
        return self

    def save(self, path: str | Path) -> int:
        return atomic_write_jsonl(path, (e.to_dict() for e in self.entries.values()))

    @classmethod
    def load(cls, path: str | Path) -> ToolLibrary:
        lib = cls()
        for lineno, rec in iter_jsonl(path):
            where = f"line {lineno}"
            if not isinstance(rec, dict):
                raise DataError(path, where, None, "a library entry must be a JSON object")
            for field_name, typ in (("key", str), ("tool", dict), ("count", int)):
                if not isinstance(rec.get(field_name), typ):
                    raise DataError(path, where, field_name, f"missing or not a {typ.__name__}")
            issues = validate_tool(rec["tool"])
            if issues:
                raise DataError(path, where, "tool", f"invalid interface: {issues[0]}")
            lib.add(rec["key"], rec["tool"], str(rec.get("origin", "template")), rec["count"])
        return lib

    @classmethod
    def load_or_new(cls, path: str | Path | None) -> ToolLibrary:
        return cls.load(path) if path and Path(path).exists() else cls()

    def report(self, top: int = 20) -> dict[str, Any]:
        """Unique tools, total uses, the most used tools and how usage counts are distributed."""
        counts = sorted(((e.count, e.name) for e in self.entries.values()), reverse=True)
        buckets: Counter[str] = Counter()
        for c, _ in counts:
            label = next((lab for hi, lab in _BUCKETS if c <= hi), "100+")
            buckets[label] += 1
        return {
            "unique_tools": len(self.entries),
            "total_uses": sum(c for c, _ in counts),
            "by_origin": dict(Counter(e.origin for e in self.entries.values())),
            "top": [{"name": n, "count": c} for c, n in counts[:top]],
            "frequency_distribution": {lab: buckets.get(lab, 0) for _, lab in (*_BUCKETS, (0, "100+"))},
        }
