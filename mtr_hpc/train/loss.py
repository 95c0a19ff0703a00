"""Loss functions shared by the CPU and GPU seams.

SFT uses a masked token mean over the WHOLE optimizer step (all microbatches and data-parallel ranks),
not a mean of per-microbatch means: each microbatch contributes `sum(loss * mask) / step_tokens`, so
packing, microbatch size and DP degree never change the gradient.
"""

from __future__ import annotations

import torch


def masked_sum(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (per_token.float() * mask.float()).sum()


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token cross entropy [B, S] from logits [B, S, V] (fp32 for stability)."""
    b, s, v = logits.shape
    return torch.nn.functional.cross_entropy(
        logits.float().reshape(b * s, v), labels.reshape(b * s), reduction="none"
    ).reshape(b, s)


def sequence_losses(per_token: torch.Tensor, mask: torch.Tensor, segment_ids: torch.Tensor) -> dict:
    """Masked mean loss of each packed segment: {(row, segment): loss}. For tests and diagnostics."""
    out = {}
    for row in range(per_token.shape[0]):
        for seg in segment_ids[row].unique().tolist():
            if seg < 0:
                continue
            sel = (segment_ids[row] == seg) & (mask[row] > 0)
            if sel.any():
                out[(row, seg)] = per_token[row][sel].float().mean()
    return out
