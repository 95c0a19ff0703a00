"""Sequence packing for SFT: first-fit-decreasing into fixed-length rows.

Each rendered trace (token ids + loss mask) becomes one *segment* of `len(ids) - 1` positions: inputs
`ids[:-1]`, labels `ids[1:]`, and the loss mask of the label token. Segments are packed into rows of
`seq_len` positions with first-fit-decreasing. Inside a row, positions restart at 0 for every segment and
`segment_ids` tell attention which tokens may see each other (block-diagonal causal mask on CPU; the
same boundaries become `cu_seqlens` for THD `packed_seq_params` on GPU), so packed sequences never
attend to each other and each sees exactly what it would see alone.

Segments longer than `seq_len` are truncated (keeping the prefix) or dropped, by policy; both are
counted in `PackStats`.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..errors import MtrError

PAD_SEGMENT = -1


@dataclass
class Segment:
    """One training sequence ready to pack (already shifted: `inputs[i]` predicts `labels[i]`)."""

    inputs: list[int]
    labels: list[int]
    loss_mask: list[int]
    source: int = -1  # index of the trace it came from

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class PackStats:
    sequences: int = 0
    truncated: int = 0
    dropped: int = 0
    rows: int = 0
    real_tokens: int = 0
    capacity: int = 0
    padded_capacity: int = 0  # what padding each sequence to seq_len alone would have cost

    @property
    def packed_fraction(self) -> float:
        return self.real_tokens / self.capacity if self.capacity else 0.0

    @property
    def padded_fraction(self) -> float:
        return self.real_tokens / self.padded_capacity if self.padded_capacity else 0.0


@dataclass
class PackedRow:
    """One row of `seq_len` positions; padding has segment id -1, label 0 and loss mask 0."""

    tokens: list[int]
    labels: list[int]
    loss_mask: list[int]
    position_ids: list[int]
    segment_ids: list[int]
    sources: list[int] = field(default_factory=list)

    def cu_seqlens(self) -> list[int]:
        """Cumulative segment boundaries (THD layout), padding as a final segment if present."""
        bounds = [0]
        for i in range(1, len(self.segment_ids)):
            if self.segment_ids[i] != self.segment_ids[i - 1]:
                bounds.append(i)
        bounds.append(len(self.segment_ids))
        return bounds


class PackingError(MtrError):
    pass


def make_segment(input_ids: Sequence[int], loss_mask: Sequence[int], source: int = -1) -> Segment:
    if len(input_ids) != len(loss_mask):
        raise PackingError(
            f"trace {source}: {len(input_ids)} token ids but {len(loss_mask)} loss-mask entries"
        )
    return Segment(list(input_ids[:-1]), list(input_ids[1:]), list(loss_mask[1:]), source)


def fit_segments(
    segments: list[Segment], seq_len: int, overflow: Literal["truncate", "drop"] = "truncate"
) -> tuple[list[Segment], PackStats]:
    """Apply the overflow policy; drop segments with nothing to learn from (no masked-in label)."""
    stats = PackStats()
    kept: list[Segment] = []
    for seg in segments:
        if len(seg) > seq_len:
            if overflow == "drop":
                stats.dropped += 1
                continue
            seg = Segment(seg.inputs[:seq_len], seg.labels[:seq_len], seg.loss_mask[:seq_len], seg.source)
            stats.truncated += 1
        if len(seg) == 0 or not any(seg.loss_mask):
            stats.dropped += 1
            continue
        kept.append(seg)
    stats.sequences = len(kept)
    return kept, stats


def first_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bin indices of `lengths` into bins of `capacity` with first-fit-decreasing.

    Bins are kept sorted by remaining space so each placement is a binary search for the tightest bin
    that fits (best fit among FFD's candidates): O(n log n) and at least as dense as plain first fit.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (remaining, bin index), sorted
    for i in order:
        n = lengths[i]
        if n > capacity:
            raise PackingError(f"sequence {i} has {n} positions, more than the row length {capacity}")
        k = bisect.bisect_left(free, (n, -1))
        if k < len(free):
            remaining, b = free.pop(k)
        else:
            b, remaining = len(bins), capacity
            bins.append([])
        bins[b].append(i)
        remaining -= n
        if remaining > 0:
            bisect.insort(free, (remaining, b))
    return bins


def pack(
    segments: list[Segment], seq_len: int, pad_id: int = 0, overflow: Literal["truncate", "drop"] = "truncate"
) -> tuple[list[PackedRow], PackStats]:
    kept, stats = fit_segments(segments, seq_len, overflow)
    bins = first_fit_decreasing([len(s) for s in kept], seq_len)
    rows = [_build_row([kept[i] for i in b], seq_len, pad_id) for b in bins]
    stats.rows = len(rows)
    stats.real_tokens = sum(len(s) for s in kept)
    stats.capacity = len(rows) * seq_len
    stats.padded_capacity = len(kept) * seq_len
    return rows, stats


def pad_one_per_row(segments: list[Segment], seq_len: int, pad_id: int = 0) -> list[PackedRow]:
    """The unpacked baseline: one sequence per row, right-padded."""
    return [_build_row([s], seq_len, pad_id) for s in segments]


def _build_row(segs: list[Segment], seq_len: int, pad_id: int) -> PackedRow:
    tokens: list[int] = []
    labels: list[int] = []
    mask: list[int] = []
    pos: list[int] = []
    seg_ids: list[int] = []
    for k, s in enumerate(segs):
        tokens += s.inputs
        labels += s.labels
        mask += s.loss_mask
        pos += range(len(s))
        seg_ids += [k] * len(s)
    pad = seq_len - len(tokens)
    tokens += [pad_id] * pad
    labels += [pad_id] * pad
    mask += [0] * pad
    pos += range(pad)
    seg_ids += [PAD_SEGMENT] * pad
    return PackedRow(tokens, labels, mask, pos, seg_ids, [s.source for s in segs])


def block_causal_mask(segment_ids):
    """Boolean [B, 1, S, S] mask, True where attention is NOT allowed (Megatron's convention).

    A token sees earlier tokens of its own segment only; padding sees only itself so no row of the
    softmax is empty.
    """
    import torch

    seg = torch.as_tensor(segment_ids)
    if seg.dim() == 1:
        seg = seg.unsqueeze(0)
    s = seg.shape[-1]
    same = seg.unsqueeze(-1) == seg.unsqueeze(-2)
    causal = torch.ones(s, s, dtype=torch.bool, device=seg.device).tril()
    allowed = same & causal
    eye = torch.eye(s, dtype=torch.bool, device=seg.device)
    allowed = allowed | eye
    return (~allowed).unsqueeze(1)


def collate(rows: list[PackedRow]):
    """Stack rows into tensors: tokens, labels, loss_mask (float), position_ids, segment_ids."""
    import torch

    return {
        "tokens": torch.tensor([r.tokens for r in rows], dtype=torch.long),
        "labels": torch.tensor([r.labels for r in rows], dtype=torch.long),
        "loss_mask": torch.tensor([r.loss_mask for r in rows], dtype=torch.float32),
        "position_ids": torch.tensor([r.position_ids for r in rows], dtype=torch.long),
        "segment_ids": torch.tensor([r.segment_ids for r in rows], dtype=torch.long),
    }
