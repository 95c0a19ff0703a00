"""Packed rows -> the tensors a Megatron forward takes.

The THD layout (one row per microbatch, flattened, with `PackedSeqParams` `cu_seqlens`) lets attention
run sequence by sequence, skipping the blocks a mask would zero out: the Transformer Engine spec needs
it, and the `sdpa` spec uses it whenever a microbatch is one row. Otherwise (the `local` spec, whose
attention takes no packed sequences, or several rows per microbatch) each row gets a block-diagonal
causal `attention_mask` ([B, 1, S, S], True = masked). Both give the same per-token losses.
"""

from __future__ import annotations

import torch

from .packing import PackedRow, block_causal_mask, collate


def uses_thd(layer_spec: str, micro_rows: int) -> bool:
    """Whether microbatches of this spec and size take the THD layout (see the module docstring)."""
    return layer_spec == "te" or (layer_spec == "sdpa" and micro_rows == 1)


def model_batch(rows: list[PackedRow], thd: bool = False) -> dict:
    batch = collate(rows)
    if not thd:
        batch["attention_mask"] = block_causal_mask(batch["segment_ids"])
        return batch
    if len(rows) != 1:
        raise ValueError("the THD layout takes one packed row per microbatch")
    from megatron.core.packed_seq_params import PackedSeqParams

    cu = torch.tensor(rows[0].cu_seqlens(), dtype=torch.int32)
    max_len = int((cu[1:] - cu[:-1]).max())
    batch["attention_mask"] = None
    batch["packed_seq_params"] = PackedSeqParams(
        qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu, max_seqlen_q=max_len, max_seqlen_kv=max_len
    )
    return batch


def microbatches(rows: list[PackedRow], micro_rows: int, thd: bool = False) -> list[dict]:
    return [model_batch(rows[i : i + micro_rows], thd) for i in range(0, len(rows), micro_rows)]
