"""Logits at chosen positions only: the output layer of a Megatron GPT model applied to a subset of rows.

The output layer is the widest matrix of a small model (SmolLM2-135M: 49,152 x 576, a fifth of its
FLOPs) and its logits the largest activation ([tokens, vocab] in fp32, twice with the gradient), while
only some positions carry loss: the assistant tokens of an SFT trace, the sampled tokens of a GRPO
episode (about a third of either). `only_rows` hands the output layer the hidden states of those
positions alone, as an [N, 1, hidden] sequence, through a forward pre-hook: the model, its loss and its
checkpoints are untouched, and Megatron's own loss code runs on the [1, N] labels unchanged.

Positions are counted in Megatron's [sequence, batch] order (`flat_positions`); `gather_rows` and
`scatter_rows` move per-token tensors between the [B, S] layout and the [1, N] one.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


def selects_rows(seam) -> bool:
    """Whether the passes on `seam` compute logits at loss positions only: on the CPU seam, where it is
    measured (`tools/bench_sft.py`); the GPU seam keeps Megatron's full-logits passes until a device
    check covers these."""
    return seam.name == "cpu"


def output_layer_of(model):
    """The output layer of a (possibly wrapped: DDP, Float16Module) Megatron GPT model; None where rows
    cannot be selected: a pipeline stage without it, or its input split over the sequence (sequence
    parallelism)."""
    while not hasattr(model, "output_layer") and hasattr(model, "module"):
        model = model.module
    if not getattr(model, "post_process", True):
        return None
    layer = getattr(model, "output_layer", None)
    return None if layer is None or getattr(layer, "sequence_parallel", False) else layer


def flat_positions(mask: torch.Tensor) -> torch.Tensor:
    """Indices of the set positions of a [B, S] mask, in [S, B] order (as hidden states are laid out)."""
    return mask.transpose(0, 1).reshape(-1).nonzero().squeeze(-1)


def gather_rows(values: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """[B, S] -> [1, N] at `flat`."""
    return values.transpose(0, 1).reshape(-1)[flat][None]


def scatter_rows(values: torch.Tensor, flat: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """[1, N] -> [B, S] with zeros elsewhere (differentiable)."""
    b, s = shape
    out = values.new_zeros(s * b).index_put((flat,), values.reshape(-1))
    return out.view(s, b).transpose(0, 1)


@contextmanager
def only_rows(layer, flat: torch.Tensor):
    """Within the block, `layer` (an output layer) sees only the hidden states at `flat`."""

    def select(module, args, kwargs):
        hidden = args[0]  # [S, B, H]
        picked = hidden.reshape(-1, hidden.shape[-1]).index_select(0, flat).unsqueeze(1)
        return (picked, *args[1:]), kwargs

    handle = layer.register_forward_pre_hook(select, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
