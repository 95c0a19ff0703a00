"""Benchmark records from the Hugging Face hub, through `datasets.load_dataset` (imported lazily).

Kept thin on purpose: the hub gives plain dict records, which go through the same record converters as
local files (the HF `hotpot_qa` column layout of `context`/`supporting_facts` is understood there).
`hf://owner/name:config` names a dataset config (e.g. `hf://hotpotqa/hotpot_qa:distractor`). Without a
split, the first of validation / dev / test that the dataset has is used: benchmarks are evaluation sets.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import DataError, require
from .source import HUB_PREFIX, RawRecord

DEFAULT_SPLITS = ("validation", "dev", "test")


def parse_hub_name(source: str) -> tuple[str, str | None]:
    """("owner/name", config or None) from `hf://owner/name[:config]` or `owner/name[:config]`."""
    name = source[len(HUB_PREFIX) :] if source.startswith(HUB_PREFIX) else source
    name, _, config = name.partition(":")
    if not name:
        raise DataError(source, None, None, "no dataset name after hf://")
    return name, config or None


def _pick_split(source: str, available: list[str]) -> str:
    for split in DEFAULT_SPLITS:
        if split in available:
            return split
    if len(available) == 1:
        return available[0]
    raise DataError(source, None, "split", f"give one of the dataset's splits: {', '.join(available)}")


def read_hub_records(source: str, split: str | None) -> tuple[str, Iterator[RawRecord]]:
    """(label naming dataset and split, its records). Any failure of the hub is a `DataError`."""
    datasets = require("datasets", "loading a benchmark from the Hugging Face hub", "pip install datasets")
    name, config = parse_hub_name(source)
    try:
        loaded = datasets.load_dataset(name, config, split=split)
        if split is None:
            split = _pick_split(source, list(loaded.keys()))
            loaded = loaded[split]
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets raises many unrelated types (network, config, FS)
        raise DataError(source, None, None, f"cannot load from the hub: {exc}") from None
    label = f"{HUB_PREFIX}{name}" + (f":{config}" if config else "") + f" [{split}]"
    return label, (RawRecord(i, f"record {i}", rec) for i, rec in enumerate(loaded))
