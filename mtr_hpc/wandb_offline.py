"""Reading a W&B offline run file (`run-*.wandb`) without the network or wandb's own reader.

The file is a LevelDB-style log: a 7-byte header (":W&B", version), then 32 KiB blocks of records, each
with a 7-byte header (CRC-32C, length, type FULL/FIRST/MIDDLE/LAST); a full record is one serialized
`wandb_internal_pb2.Record`. Tests use this to check what a run logged; `wandb sync` is the way to
upload the same files.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

from .errors import DataError

_HEADER = 7
_BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def iter_records(path: str | Path) -> Iterator[bytes]:
    data = Path(path).read_bytes()
    if not data.startswith(b":W&B"):
        raise DataError(path, None, None, "not a W&B run file (no ':W&B' header)")
    pos, pending = _HEADER, b""
    while pos + _HEADER <= len(data):
        room = _BLOCK - (pos % _BLOCK)
        if room < _HEADER:  # block trailer padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if length == 0 and kind == 0:
            pos += room
            continue
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""


def logged(path: str | Path) -> dict:
    """{"group", "job_type", "history": [ {key: json value} per logged step ]} of one run file."""
    import json

    from wandb.proto import wandb_internal_pb2

    out: dict = {"group": None, "job_type": None, "history": []}
    for raw in iter_records(path):
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["group"], out["job_type"] = rec.run.run_group, rec.run.job_type
        elif kind == "history":
            row = {}
            for item in rec.history.item:
                key = item.key or "/".join(item.nested_key)
                row[key] = json.loads(item.value_json) if item.value_json else None
            out["history"].append(row)
    return out
