"""The SFT forward step and loss function, shared by both device seams (Megatron's schedule signature).

`forward_step(data_iterator, model) -> (per-token loss, loss_func)` and
`loss_func(output) -> (masked loss SUM, masked token count, report)`: the seam contract
(`seams.base`); SFT needs no report. Gradients end up divided by the token count of the whole step
(all microbatches and data-parallel ranks) on both seams, so they optimize the same token-mean objective:
a mean over every loss token of the step, not a mean of per-microbatch means, so packing, microbatch
size and the data-parallel degree never change the gradient.
"""

from __future__ import annotations

from functools import partial

import torch

from .positions import flat_positions, gather_rows, only_rows, output_layer_of


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


def sft_loss_positions_step(data_iterator, model):
    """`sft_forward_step` with logits computed only where the loss mask is set: the same loss, without
    the output layer's work on the other positions (see `positions`). Used by the CPU seam; falls back
    to the full step where rows cannot be selected."""
    batch = next(data_iterator)
    layer = output_layer_of(model)
    if layer is None:
        return sft_forward_step(iter([batch]), model)
    flat = flat_positions(batch["loss_mask"])
    labels = gather_rows(batch["labels"], flat)
    with only_rows(layer, flat):
        output = model(
            batch["tokens"],
            batch["position_ids"],
            batch.get("attention_mask"),
            labels=labels,
            packed_seq_params=batch.get("packed_seq_params"),
        )
    return output, partial(masked_loss_func, torch.ones_like(labels))
