"""SFT data: traces -> rendered token ids + loss masks -> packed rows -> resumable batches.

The order of rows is a pure function of (seed, epoch), and the position in it is a small record
(`DataPosition`) saved in every checkpoint, so a resumed run sees exactly the batches an uninterrupted
run would have seen.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Literal

from ..errors import MtrError
from .packing import PackedRow, PackStats, make_segment, pack


class SFTDataError(MtrError):
    pass


@dataclass
class DataPosition:
    epoch: int = 0
    index: int = 0  # next row of this epoch's order

    def to_dict(self) -> dict:
        return asdict(self)


def render_segments(traces, renderer) -> list:
    segs = []
    for i, trace in enumerate(traces):
        r = renderer.render(trace)
        segs.append(make_segment(r.input_ids, r.loss_mask, source=i))
    return segs


def build_rows(
    traces, renderer, seq_len: int, pad_id: int, overflow: Literal["truncate", "drop"] = "truncate"
) -> tuple[list[PackedRow], PackStats]:
    if not traces:
        raise SFTDataError("no traces to train on (the trace files are empty or every trace was invalid)")
    rows, stats = pack(render_segments(traces, renderer), seq_len, pad_id, overflow)
    if not rows:
        raise SFTDataError(
            f"all {len(traces)} traces were dropped (longer than seq_len={seq_len} with overflow=drop, "
            f"or no assistant tokens)"
        )
    return rows, stats


def split_heldout(items: list, fraction: float, seed: int) -> tuple[list, list]:
    """Deterministic split into (train, heldout); at least one held-out item when fraction > 0."""
    if fraction <= 0 or len(items) < 2:
        return list(items), []
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_held = max(1, int(round(len(items) * fraction)))
    held = set(order[:n_held])
    return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]


class RowSampler:
    """Yields batches of rows forever, reshuffling each epoch with `seed + epoch`."""

    def __init__(self, rows: list[PackedRow], batch_rows: int, seed: int):
        if batch_rows < 1:
            raise SFTDataError("batch size must be at least one row")
        self.rows = rows
        self.batch_rows = batch_rows
        self.seed = seed

    def order(self, epoch: int) -> list[int]:
        idx = list(range(len(self.rows)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(idx)
        return idx

    def batches(self, start: DataPosition) -> Iterator[tuple[list[PackedRow], DataPosition]]:
        """Yield (batch, position after it). A batch may span an epoch boundary."""
        epoch, index = start.epoch, start.index
        order = self.order(epoch)
        while True:
            batch = []
            while len(batch) < self.batch_rows:
                if index >= len(order):
                    epoch, index = epoch + 1, 0
                    order = self.order(epoch)
                batch.append(self.rows[order[index]])
                index += 1
            yield batch, DataPosition(epoch, index)
