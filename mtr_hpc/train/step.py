"""The SFT forward step and loss function, shared by both device seams (Megatron's schedule signature).

`forward_step(data_iterator, model) -> (per-token loss, loss_func)` and
`loss_func(output) -> (masked loss SUM, masked token count, report)`: the seam contract
(`seams.base`); SFT needs no report. Gradients end up divided by the token count of the whole step
(all microbatches and data-parallel ranks) on both seams, so they optimize the same token-mean objective.
"""

from __future__ import annotations

from functools import partial

import torch


def masked_loss_func(loss_mask: torch.Tensor, output_tensor: torch.Tensor):
    losses = output_tensor.float()
    mask = loss_mask.float().reshape(losses.shape)
    return (losses * mask).sum(), mask.sum().to(torch.int), {}


def sft_forward_step(data_iterator, model):
    batch = next(data_iterator)
    output = model(
        batch["tokens"],
        batch["position_ids"],
        batch.get("attention_mask"),
        labels=batch["labels"],
        packed_seq_params=batch.get("packed_seq_params"),
    )
    return output, partial(masked_loss_func, batch["loss_mask"])
