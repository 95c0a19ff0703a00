"""First-fit-decreasing packing: capacity, completeness, restarting positions, block-diagonal masks."""

from __future__ import annotations

import random

import pytest
import torch

from mtr_hpc.train.packing import (
    PAD_SEGMENT,
    PackingError,
    block_causal_mask,
    collate,
    first_fit_decreasing,
    make_segment,
    pack,
)


def _segments(lengths, seed=0):
    rng = random.Random(seed)
    out = []
    for i, n in enumerate(lengths):
        ids = [rng.randrange(3, 100) for _ in range(n + 1)]
        mask = [0] * (n // 2 + 1) + [1] * (n - n // 2)
        out.append(make_segment(ids, mask, source=i))
    return out


def test_ffd_places_everything_within_capacity():
    rng = random.Random(1)
    lengths = [rng.randrange(1, 100) for _ in range(500)]
    bins = first_fit_decreasing(lengths, 100)
    placed = sorted(i for b in bins for i in b)
    assert placed == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 100 for b in bins)
    # FFD uses at most 11/9 OPT + 6/9 bins; OPT >= ceil(total / capacity)
    lower = -(-sum(lengths) // 100)
    assert len(bins) <= 11 / 9 * lower + 1


def test_ffd_exact_fit():
    assert sorted(map(sorted, first_fit_decreasing([6, 4, 5, 5, 3, 7], 10))) == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(PackingError):
        first_fit_decreasing([11], 10)


def test_rows_restart_positions_and_keep_segments_intact():
    segs = _segments([5, 9, 3, 7, 2])
    rows, stats = pack(segs, seq_len=12, pad_id=0)
    assert stats.real_tokens == 26 and stats.rows == len(rows)
    seen = set()
    for row in rows:
        assert len(row.tokens) == len(row.labels) == len(row.position_ids) == len(row.segment_ids) == 12
        for k, src in enumerate(row.sources):
            idx = [i for i, s in enumerate(row.segment_ids) if s == k]
            assert idx == list(range(idx[0], idx[0] + len(idx)))  # contiguous
            assert [row.position_ids[i] for i in idx] == list(range(len(idx)))  # restart at 0
            assert [row.tokens[i] for i in idx] == segs[src].inputs
            assert [row.labels[i] for i in idx] == segs[src].labels
            seen.add(src)
        pad = [i for i, s in enumerate(row.segment_ids) if s == PAD_SEGMENT]
        assert all(row.loss_mask[i] == 0 for i in pad)
    assert seen == set(range(5))
    assert stats.packed_fraction > stats.padded_fraction


def test_overflow_policy_is_counted():
    segs = [make_segment(list(range(n + 1)), [1] * (n + 1), source=i) for i, n in enumerate([20, 5, 5])]
    rows, stats = pack(segs, seq_len=10, overflow="truncate")
    assert stats.truncated == 1 and stats.dropped == 0 and stats.real_tokens == 20
    rows, stats = pack(segs, seq_len=10, overflow="drop")
    assert stats.dropped == 1 and stats.real_tokens == 10


def test_segment_without_learnable_tokens_is_dropped():
    seg = make_segment([1, 2, 3, 4], [1, 1, 0, 0])  # label mask = [1, 0, 0]
    assert seg.loss_mask == [1, 0, 0]
    empty = make_segment([1, 2, 3], [1, 0, 0])
    rows, stats = pack([seg, empty], seq_len=8)
    assert stats.sequences == 1 and stats.dropped == 1
    with pytest.raises(PackingError, match="loss-mask"):
        make_segment([1, 2, 3], [1, 0])


def test_block_causal_mask():
    rows, _ = pack(_segments([3, 2]), seq_len=6)
    batch = collate(rows)
    mask = block_causal_mask(batch["segment_ids"])  # True = blocked
    assert mask.shape == (1, 1, 6, 6)
    seg = batch["segment_ids"][0]
    for i in range(6):
        for j in range(6):
            allowed = (seg[i] == seg[j] and j <= i and seg[i] != PAD_SEGMENT) or i == j
            assert bool(mask[0, 0, i, j]) == (not allowed)
    assert batch["loss_mask"].dtype == torch.float32
    assert rows[0].cu_seqlens() == [0, 3, 5, 6]
