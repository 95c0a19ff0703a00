"""One GRPO policy update on this rank's slice of the scored episodes, through the device seam.

Old (and reference) log-probs are recomputed by the trainer, then `minibatches` clipped-policy updates
run. Update `j` trains on the samples `samples[j::k]` of the whole step, shared out over data-parallel
ranks, so the sequence of updates does not depend on the number of ranks. Every rank makes the same
calls in the same order, whatever its share (an empty one included), so the collectives inside the seam
always pair up. Log-probs, losses and their statistics exist
on the last pipeline stage; sums are reduced over data-parallel ranks there and the finished metrics are
handed to every stage of the pipeline (the logger sits on global rank 0, a first-stage rank).
"""

from __future__ import annotations

import time

import torch
import torch.distributed as dist

from ..models.parallel import collective_device, from_last_stage
from .grpo_batch import make_forward_step, microbatches
from .grpo_config import GRPOAlgoConfig, GRPOConfig
from .grpo_loss import all_reduce_stats, empty_stats, finalize_stats, merge_stats
from .positions import selects_rows
from .schedule import lr_at


def policy_update(
    seam, model, reference, optimizer, samples: list, cfg: GRPOConfig, tp_group, pad_id: int, step: int,
    timings: dict,
) -> dict:  # fmt: skip
    """Train on this rank's share of `samples` (the whole step's, the same on every rank); the `grpo/*`
    metrics of the whole step."""
    from megatron.core import parallel_state as ps

    dp_rank, dp_size = ps.get_data_parallel_rank(), ps.get_data_parallel_world_size()
    k = max(1, cfg.algo.minibatches)
    updates = []  # this rank's microbatches of each update
    for j in range(k):
        mine = samples[j::k][dp_rank::dp_size]
        updates.append([seam.to_device(b) for b in microbatches(mine, cfg.train.micro_batch_rows, pad_id)])
    mbs = [mb for update in updates for mb in update]
    t = time.perf_counter()
    old = logprob_pass(seam, model, mbs, cfg.algo, tp_group, "old_logprobs")
    timings["timing_s/old_logprobs"] = time.perf_counter() - t
    if reference is not None:
        t = time.perf_counter()
        logprob_pass(seam, reference, mbs, cfg.algo, tp_group, "ref_logprobs")
        timings["timing_s/reference"] = time.perf_counter() - t
    t = time.perf_counter()
    out = train_on(seam, model, optimizer, updates, tp_group, cfg, step, reference is not None)
    timings["timing_s/train"] = time.perf_counter() - t
    out.update(logprob_metrics(mbs, old))
    return from_last_stage(out)


def logprob_pass(seam, model, mbs: list[dict], settings: GRPOAlgoConfig, tp_group, key: str) -> list[dict]:
    """Forward-only pass; each microbatch gets its per-token log-probs under `key` (last stage)."""
    model.eval()
    _, _, reports = seam.forward_backward(
        model, make_forward_step("logprobs", settings, tp_group, selects_rows(seam)), mbs, forward_only=True
    )
    for mb, rep in zip(mbs, reports, strict=False):
        mb[key] = rep["logprobs"]
    return reports


def train_on(
    seam, model, optimizer, updates: list[list[dict]], tp_group, cfg: GRPOConfig, step: int, with_kl: bool
) -> dict:
    """One clipped-policy update per entry of `updates` (this rank's microbatches of it)."""
    from megatron.core import parallel_state as ps

    k = len(updates)
    forward = make_forward_step("train", cfg.algo, tp_group, selects_rows(seam))
    lr = lr_at(step, cfg.train.steps, cfg.optim)
    stats, norms, losses = empty_stats(with_kl, seam.device, cfg.algo.tis), [], []
    for j in range(k):
        model.train()
        loss_sum, count, reports = seam.forward_backward(model, forward, updates[j])
        if count == 0:  # no token on any rank (fewer microbatches than updates): no Adam step on zeros
            seam.zero_grads(model, optimizer)
            continue
        norm, _ = seam.optimizer_step(model, optimizer, lr, cfg.optim.clip_grad)
        norms.append(norm)
        losses.append(loss_sum / count)
        for rep in reports:
            stats = merge_stats(stats, rep["stats"])
    if ps.get_data_parallel_world_size() > 1:
        stats = all_reduce_stats(stats, ps.get_data_parallel_group())
    out = {f"grpo/{name}": v for name, v in finalize_stats(stats).items()}
    out["grpo/loss"] = sum(losses) / max(len(losses), 1)
    out["grpo/grad_norm"] = sum(norms) / max(len(norms), 1)
    out["grpo/updates"] = len(norms)
    out["grpo/lr"] = lr
    return out


def logprob_metrics(mbs: list[dict], reports: list[dict]) -> dict:
    """Per sampled token, over data-parallel ranks: the mean |trainer - engine| log-prob, the k3
    estimate of KL(engine || trainer) on the engine's samples, (r - 1) - log r with r = p_trainer /
    p_engine, and the mean entropy."""
    from megatron.core import parallel_state as ps

    sums = torch.zeros(4, dtype=torch.float64)
    for mb, rep in zip(mbs, reports, strict=False):
        m = mb["mask"]
        log_r = (mb["old_logprobs"] - mb["engine_logprobs"]).double()
        sums[0] += float((log_r.abs() * m).sum())
        sums[1] += float(rep["entropy_sum"])
        sums[2] += float(m.sum())
        sums[3] += float(((torch.exp(log_r) - 1 - log_r) * m).sum())
    if ps.get_data_parallel_world_size() > 1:
        group = ps.get_data_parallel_group()
        sums = sums.to(collective_device(group))
        dist.all_reduce(sums, group=group)
    n = max(float(sums[2]), 1.0)
    return {
        "grpo/logprob_abs_diff": float(sums[0]) / n,
        "grpo/entropy": float(sums[1]) / n,
        "grpo/engine_kl": float(sums[3]) / n,
    }
