"""The forward step and loss function shared by both device seams (Megatron's schedule signature).

`forward_step(data_iterator, model) -> (per-token loss, loss_func)` and
`loss_func(output) -> (masked loss SUM, masked token count, report)`: the three-value form Megatron
uses with `calculate_per_token_loss=True`, where the schedule backpropagates the sum and
`finalize_model_grads` divides gradients by the token count of the whole step (all microbatches and
data-parallel ranks). The CPU seam reproduces exactly that division, so both seams optimize the same
token-mean objective.
"""

from __future__ import annotations

from functools import partial

import torch


def masked_loss_func(loss_mask: torch.Tensor, output_tensor: torch.Tensor):
    losses = output_tensor.float()
    mask = loss_mask.float().reshape(losses.shape)
    loss_sum = (losses * mask).sum()
    num_tokens = mask.sum().to(torch.int)
    report = torch.stack([loss_sum.detach().clone(), num_tokens.detach().float()])
    return loss_sum, num_tokens, {"lm loss": report}


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
