"""Shards of a synthesis run: which examples a shard owns, where its files live, and its resume journal.

Assignment: an example belongs to shard `sha256("<benchmark>:<id>") mod num_shards`. A stable hash (not
contiguous ranges) keeps the assignment independent of source order and of the other examples, so adding
a source or raising a limit never moves an already finished example to another shard.

Files of shard 3 of 4 in run directory DIR (`shard-00003-of-00004`):

    traces/shard-00003-of-00004.jsonl        kept traces (final, written atomically at completion)
    rejects/shard-00003-of-00004.jsonl       {"example_id", "benchmark", "reason", "scores", "trace"}
    tool_library/shard-00003-of-00004.jsonl  the shard's tool library (ToolLibrary.save)
    cache/shard-00003-of-00004.jsonl         replay cache of simulated observations (SimCache)
    shards/shard-00003-of-00004.manifest.json  counts, timings, versions; its presence marks completion
    shards/shard-00003-of-00004.partial      the journal of a shard in progress (removed at completion)

The journal holds one JSON line per finished example, written with a single `write` and fsync'd, so a
`kill -9` at any moment loses at most the example in flight. On reopening, bytes after the last newline
(a torn write) are cut off; a complete line that is not JSON is corruption and raises `DataError`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..sim.sim_cache import SimCache


def shard_of(key: str, num_shards: int) -> int:
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


def shard_name(index: int, num_shards: int) -> str:
    return f"shard-{index:05d}-of-{num_shards:05d}"


@dataclass(frozen=True)
class ShardSpec:
    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError("shard_index", f"shard {self.index} does not exist in {self.count} shards")

    @property
    def name(self) -> str:
        return shard_name(self.index, self.count)

    def owns(self, key: str) -> bool:
        return shard_of(key, self.count) == self.index


def slurm_array_shard(env: Mapping[str, str] | None = None) -> tuple[int | None, int | None]:
    """(index, count) of this Slurm array task, 0-based (`SLURM_ARRAY_TASK_MIN` subtracted); Nones outside."""
    env = os.environ if env is None else env
    task = env.get("SLURM_ARRAY_TASK_ID")
    if task is None:
        return None, None
    try:
        index = int(task) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        count = int(env["SLURM_ARRAY_TASK_COUNT"]) if "SLURM_ARRAY_TASK_COUNT" in env else None
    except ValueError:
        raise ConfigError("SLURM_ARRAY_TASK_ID", f"not an integer array task: {task!r}") from None
    return index, count


@dataclass(frozen=True)
class ShardPaths:
    run_dir: Path
    name: str

    @property
    def traces(self) -> Path:
        return self.run_dir / "traces" / f"{self.name}.jsonl"

    @property
    def rejects(self) -> Path:
        return self.run_dir / "rejects" / f"{self.name}.jsonl"

    @property
    def library(self) -> Path:
        return self.run_dir / "tool_library" / f"{self.name}.jsonl"

    @property
    def cache(self) -> Path:
        return self.run_dir / "cache" / f"{self.name}.jsonl"

    @property
    def manifest(self) -> Path:
        return self.run_dir / "shards" / f"{self.name}.manifest.json"

    @property
    def journal(self) -> Path:
        return self.run_dir / "shards" / f"{self.name}.partial"


class Journal:
    """Append-only, fsync'd JSONL of finished examples; reopened after a kill without loss or duplicates."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        self.dropped_tail = 0
        if path.exists():
            self._load()

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def _load(self) -> None:
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            # The process died inside its last write: those bytes were never a finished example.
            self.dropped_tail = len(data) - end
            with open(self.path, "r+b") as fh:
                fh.truncate(end)
                fh.flush()
                os.fsync(fh.fileno())
        for lineno, raw in enumerate(data[:end].split(b"\n")[:-1], 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise DataError(self.path, f"line {lineno}", None, "journal line is not JSON") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("key"), str):
                raise DataError(self.path, f"line {lineno}", "key", "journal record without a key")
            self.records.setdefault(rec["key"], rec)

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        self.records[record["key"]] = record

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records.values())


class ShardCache(SimCache):
    """The replay cache of a shard, durable once per finished example instead of once per observation.

    Observations are appended without fsync (a killed process loses nothing the kernel already has) and
    `sync()`, called before the example's journal line is written, makes them durable in one fsync: the
    per-observation fsync of `SimCache` would otherwise bound an `llm` run to a few hundred observations
    per second, whatever the concurrency.
    """

    def __init__(self, path: Path):
        self._fd: int | None = None
        self._dirty = False
        super().__init__(path)

    def _append(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        view = memoryview(line)
        while view:
            view = view[os.write(self._fd, view) :]
        self._dirty = True

    def sync(self) -> None:
        if self._fd is not None and self._dirty:
            self._dirty = False
            os.fsync(self._fd)

    def close(self) -> None:
        self.sync()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
