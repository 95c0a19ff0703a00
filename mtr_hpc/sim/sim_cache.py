"""Replay cache of simulated observations (design §5).

Key: (hash of the tool interface, canonical JSON of the arguments, example id, seed), and the noise
rate as a fifth element when the grounded simulator holds evidence back (a curriculum changes it). Kept in memory
and, with a path, appended to a JSONL file, one fsync'd line per observation, so a killed run loses at
most the observation being written. On load a truncated last line (a process killed mid-write) is
dropped and cut off the file; a malformed line elsewhere is a `DataError`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..toolspec import canonical_json

CacheKey = tuple  # (str, str, str, int) or (str, str, str, int, float)


def tool_hash(tool: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(tool).encode()).hexdigest()[:16]


def cache_key(tool: dict[str, Any], args: dict[str, Any], example_id: str, seed: int) -> CacheKey:
    return (tool_hash(tool), canonical_json(args), str(example_id), int(seed))


class SimCache:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else None
        self._mem: dict[CacheKey, Any] = {}
        self.hits = 0
        self.misses = 0
        self.dropped_tail = False
        if self.path is not None and self.path.exists():
            self._load()

    def __len__(self) -> int:
        return len(self._mem)

    def get(self, key: CacheKey) -> Any | None:
        obs = self._mem.get(key)
        if obs is None:
            self.misses += 1
        else:
            self.hits += 1
        return obs

    def put(self, key: CacheKey, obs: Any) -> None:
        if key in self._mem:
            return
        self._mem[key] = obs
        if self.path is not None:
            self._append({"key": list(key), "obs": obs})

    def _append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def _load(self) -> None:
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        # A file written only by `_append` ends with "\n"; anything after the last one is a torn write.
        complete, tail = lines[:-1], lines[-1]
        for lineno, raw in enumerate(complete, 1):
            if not raw.strip():
                continue
            self._load_line(raw, lineno)
        if tail.strip():
            try:
                self._load_line(tail, len(lines))
            except DataError:
                self.dropped_tail = True
            with open(self.path, "r+b") as fh:
                fh.truncate(len(data) - len(tail))
                if not self.dropped_tail:
                    fh.seek(0, os.SEEK_END)
                    fh.write(tail + b"\n")

    def absorb(self, path: str | Path) -> None:
        """Load the complete records of another writer's file (another data-parallel rank's), read only:
        a torn last line is left to that file's own writer."""
        path = Path(path)
        for lineno, raw in enumerate(path.read_bytes().split(b"\n")[:-1], 1):
            if raw.strip():
                self._load_line(raw, lineno, path)

    def _load_line(self, raw: bytes, lineno: int, source: Path | None = None) -> None:
        where, source = f"line {lineno}", source or self.path
        try:
            rec = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise DataError(source, where, None, "not valid JSON") from None
        key = rec.get("key") if isinstance(rec, dict) else None
        if not (isinstance(key, list) and len(key) in (4, 5) and "obs" in rec):
            raise DataError(
                source, where, "key", "a cache record needs 'key' [tool, args, example, seed] and 'obs'"
            )
        base = (str(key[0]), str(key[1]), str(key[2]), int(key[3]))
        self._mem[base if len(key) == 4 else (*base, float(key[4]))] = rec["obs"]
