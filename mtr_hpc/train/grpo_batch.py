"""Scored episodes -> the tensors GRPO trains on, and the forward step that scores them.

Token in, token out: a row is an episode's `token_ids` exactly as sampled plus the observations the
environment appended (inputs `ids[:-1]`, labels `ids[1:]`); the loss mask is 1 exactly on sampled tokens.
Rows are right-padded per microbatch, so a plain causal mask suffices (padding only follows real tokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from .grpo_config import GRPOAlgoConfig
from .grpo_loss import policy_loss_sums, vocab_parallel_entropy, vocab_parallel_logprobs
from .positions import flat_positions, gather_rows, only_rows, output_layer_of, scatter_rows


@dataclass
class Sample:
    """One episode ready to train on (all lists aligned to the shifted labels)."""

    tokens: list[int]
    labels: list[int]
    mask: list[int]
    engine_logprobs: list[float]
    advantage: float


def sample_of(episode, advantage: float) -> Sample:
    ids = episode.token_ids
    return Sample(ids[:-1], ids[1:], episode.loss_mask[1:], episode.engine_logprobs[1:], advantage)


def collate(samples: list[Sample], pad_id: int) -> dict:
    n = max(len(s.tokens) for s in samples)

    def pad(seq, value):
        return seq + [value] * (n - len(seq))

    tokens = torch.tensor([pad(s.tokens, pad_id) for s in samples], dtype=torch.long)
    return {
        "tokens": tokens,
        "labels": torch.tensor([pad(s.labels, pad_id) for s in samples], dtype=torch.long),
        "mask": torch.tensor([pad(s.mask, 0) for s in samples], dtype=torch.float32),
        "engine_logprobs": torch.tensor([pad(s.engine_logprobs, 0.0) for s in samples], dtype=torch.float32),
        "advantages": torch.tensor([s.advantage for s in samples], dtype=torch.float32),
        "position_ids": torch.arange(n).unsqueeze(0).expand(len(samples), n).contiguous(),
    }


def microbatches(samples: list[Sample], rows: int, pad_id: int) -> list[dict]:
    return [collate(samples[i : i + rows], pad_id) for i in range(0, len(samples), rows)]


def make_forward_step(mode: str, settings: GRPOAlgoConfig, tp_group=None, positions_only: bool = False):
    """`forward_step(data_iterator, model)` for the passes over the same microbatches:

    - `logprobs`: forward only; the report holds the per-token log-probs (old / reference policy)
      and the entropy sum;
    - `train`: the clipped policy loss (sum, count) with its stat sums in the report.

    `positions_only`: logits only at the sampled tokens (`positions`; the CPU seam's choice), the same
    results as [B, S] tensors with zeros elsewhere.
    """

    def forward_step(data_iterator, model):
        batch = next(data_iterator)
        layer = output_layer_of(model) if positions_only else None
        if layer is None:
            logits = model(batch["tokens"], batch["position_ids"], None)
            return logits, partial(_loss_func, mode, settings, tp_group, batch, None)
        flat = flat_positions(batch["mask"])
        with only_rows(layer, flat):
            logits = model(batch["tokens"], batch["position_ids"], None)  # [1, N, vocab]
        return logits, partial(_loss_func, mode, settings, tp_group, batch, flat)

    return forward_step


def _loss_func(mode: str, s: GRPOAlgoConfig, tp_group, batch: dict, flat, logits: torch.Tensor):
    labels, mask = batch["labels"], batch["mask"]
    if flat is None:
        logprobs = vocab_parallel_logprobs(logits, labels, tp_group, s.temperature)
    else:
        picked = vocab_parallel_logprobs(logits, gather_rows(labels, flat), tp_group, s.temperature)
        logprobs = scatter_rows(picked, flat, labels.shape)
    if mode == "logprobs":
        with torch.no_grad():
            entropy = vocab_parallel_entropy(logits.detach(), tp_group, s.temperature)
            if flat is not None:
                entropy = scatter_rows(entropy, flat, labels.shape)
            report = {"logprobs": logprobs.detach(), "entropy_sum": (entropy * mask).sum()}
        zero = (logprobs * 0).sum()
        return zero, mask.sum().to(torch.int), report
    loss_sum, count, stats = policy_loss_sums(
        logprobs,
        batch["old_logprobs"],
        batch["advantages"],
        mask,
        s.clip_low,
        s.clip_high,
        batch.get("ref_logprobs"),
        s.kl_coef,
        s.aggregation,
        batch["engine_logprobs"] if s.tis else None,
        s.tis_cap,
    )
    return loss_sum, count.to(torch.int), {"stats": stats}
