"""`predictions.jsonl`: the eval run's journal, one line per finished question, appended as it finishes.

Each append is written, flushed and fsynced before the run goes on, so a killed run loses at most the
questions in flight; a rerun reads the journal and skips every (model, setting, benchmark, id) already in
it, where the setting is `direct` or `tools/<env>` (`config.setting_label`).
A kill can cut the last line short: that tail is cut off on open (its question is simply redone). A
malformed line anywhere else means the file was edited or is not this run's, and is an error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import DataError
from .config import setting_label

KEY_FIELDS = ("model", "mode", "env", "benchmark", "id")
Key = tuple[str, str, str, str]  # (model, setting, benchmark, id)


def record_key(record: dict[str, Any]) -> Key:
    setting = setting_label(str(record["mode"]), str(record["env"]))
    return (str(record["model"]), setting, str(record["benchmark"]), str(record["id"]))


class PredictionJournal:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records: dict[Key, dict[str, Any]] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(len(complete))
                os.fsync(fh.fileno())
        for lineno, line in enumerate(complete.decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(self.path, f"line {lineno}", None, f"not JSON ({exc.msg})") from None
            missing = [k for k in KEY_FIELDS if not isinstance(rec, dict) or k not in rec]
            if missing:
                raise DataError(self.path, f"line {lineno}", missing[0], "is missing")
            self.records[record_key(rec)] = rec

    def __contains__(self, key: Key) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        batch = list(records)
        if not batch:
            return
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in batch)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        for r in batch:
            self.records[record_key(r)] = r

    def select(self, model: str, setting: str, benchmark: str) -> list[dict[str, Any]]:
        return [r for (m, s, b, _), r in self.records.items() if (m, s, b) == (model, setting, benchmark)]
