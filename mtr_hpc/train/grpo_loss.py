"""GRPO losses in pure torch: group advantages, the clipped token-level policy objective, KL, entropy,
and log-probabilities from full or vocab-parallel logits. Shared by the CPU and Megatron seams.

Objective (per sampled token t of sequence i, ratio r = exp(logp - old_logp)):

    loss_t = -min(r·A_i, clip(r, 1 - clip_low, 1 + clip_high)·A_i) + kl_coef·k3_t
    k3_t   = exp(ref_t - logp_t) - (ref_t - logp_t) - 1          (>= 0, 0 when equal)

The asymmetric clip (clip_high > clip_low, "clip-higher" of DAPO) keeps low-probability tokens
explorable. Off-policy correction (optional): the rollouts come from the engine, whose log-probs differ
from the trainer's on GPUs (bf16/FP8 kernels, vLLM's sampler), so the policy-gradient term of each token
is weighted by truncated importance sampling, w_t = min(exp(old_logp_t - engine_logp_t), C), detached
(the TIS of verl, slime, NeMo-RL and TRL); the KL term is not weighted. Advantages are the group-normalized rewards of GRPO; `scale_std=False` is Dr. GRPO's
variant (mean-centred only), which avoids up-weighting groups whose rewards barely differ.

Normalization over a WHOLE optimizer step: like the SFT loss (`train.step`), `policy_loss_sums`
returns the loss SUM of a microbatch with its count, never a per-microbatch mean, so microbatch size,
packing and data-parallel degree do not change the gradient. With `aggregation="token_mean"` the count
is the number of loss tokens and the sum runs over tokens; with `"seq_mean_token_mean"` each sequence's
token mean is one term and the count is the number of sequences. The driver sums the counts of every
microbatch on every rank (all-reduce) first, then backpropagates `loss_sum / step_count` per microbatch.
Stats are sums too (`merge_stats` across microbatches, all-reduce across ranks; keys ending in `_max`
reduce with max), and `finalize_stats` turns them into means.

Logprob convention (the rollout protocol's): log-softmax of `logits / temperature`, in fp32.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..errors import ConfigError

AGGREGATIONS = ("token_mean", "seq_mean_token_mean")
DEFAULT_CHUNK_ROWS = 1024


# ---- advantages ---------------------------------------------------------------------------------------
def _groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    if rewards.dim() != 1:
        raise ConfigError("rewards", f"expected a 1-D tensor of rewards, got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size:
        raise ConfigError("group_size", f"{rewards.numel()} rewards do not split into groups of {group_size}")
    return rewards.float().view(-1, group_size)


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale_std: bool = True, eps: float = 1e-6
) -> torch.Tensor:
    """(r - group mean) / (group std + eps) for rewards [N] laid out group after group; [N] float32.

    The std is the sample std (Bessel-corrected, as torch.std); a group of one has advantage 0.
    `scale_std=False` (Dr. GRPO) returns r - group mean.
    """
    g = _groups(rewards, group_size)
    centred = g - g.mean(dim=1, keepdim=True)
    if scale_std and group_size > 1:
        centred = centred / (g.std(dim=1, keepdim=True) + eps)
    return centred.reshape(-1)


def drop_uniform_groups(rewards: torch.Tensor, group_size: int, tol: float = 0.0) -> torch.Tensor:
    """Bool keep mask [N]: False for every member of a group whose rewards all lie within `tol`
    (such a group has zero advantage everywhere and only dilutes the step)."""
    g = _groups(rewards, group_size)
    keep = (g.max(dim=1).values - g.min(dim=1).values) > tol
    return keep.repeat_interleave(group_size)


# ---- log-probabilities and entropy -------------------------------------------------------------------
def _rows(logits: torch.Tensor) -> torch.Tensor:
    return logits.reshape(-1, logits.shape[-1])


def token_logprobs(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> torch.Tensor:
    """log_softmax(logits / T)[label] in fp32, shape of `labels`; computed chunk by chunk of rows, so
    the fp32 copy of the logits never exists for the whole batch at once."""
    flat, lab = _rows(logits), labels.reshape(-1, 1)
    out = []
    for s in range(0, flat.shape[0], chunk_rows):
        chunk = flat[s : s + chunk_rows].float()
        if temperature != 1.0:
            chunk = chunk / temperature
        target = chunk.gather(-1, lab[s : s + chunk_rows]).squeeze(-1)
        out.append(target - torch.logsumexp(chunk, dim=-1))
    return torch.cat(out).view(labels.shape) if out else flat.new_zeros(labels.shape, dtype=torch.float32)


def entropy_from_logits(
    logits: torch.Tensor, temperature: float = 1.0, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> torch.Tensor:
    """Entropy of softmax(logits / T) per position [...] (fp32), chunked like `token_logprobs`."""
    flat = _rows(logits)
    out = []
    for s in range(0, flat.shape[0], chunk_rows):
        chunk = flat[s : s + chunk_rows].float()
        if temperature != 1.0:
            chunk = chunk / temperature
        lse = torch.logsumexp(chunk, dim=-1, keepdim=True)
        # H = lse - E_p[z]; masked (-inf) logits have p = 0 and must not turn 0 * -inf into NaN.
        finite = chunk.masked_fill(~torch.isfinite(chunk), 0.0)
        out.append((lse - (torch.exp(chunk - lse) * finite).sum(-1, keepdim=True)).squeeze(-1))
    shape = logits.shape[:-1]
    return torch.cat(out).view(shape) if out else flat.new_zeros(shape, dtype=torch.float32)


def _all_reduce(t: torch.Tensor, op, group) -> None:
    """All-reduce over the tensor-parallel `group`; `None` means the vocabulary is not split (never the
    world group: data-parallel ranks hold different sequences)."""
    if group is not None and dist.get_world_size(group) > 1:
        dist.all_reduce(t, op=op, group=group)


class _VocabParallelLogprob(torch.autograd.Function):
    """log p(label) from logits sharded over the vocabulary (rank k holds ids [k·V/tp, (k+1)·V/tp)).

    Forward: global max (all-reduce MAX), the target logit from the rank that owns it (all-reduce SUM of
    a masked gather), global sum of exps (all-reduce SUM). Backward is local: d logp / d z_j =
    1[j = label] - softmax_j on each rank's own shard, so no communication is needed.
    """

    @staticmethod
    def forward(ctx, shard: torch.Tensor, labels: torch.Tensor, group) -> torch.Tensor:
        z = shard.float()
        zmax = z.max(dim=-1).values
        _all_reduce(zmax, dist.ReduceOp.MAX, group)
        z = z - zmax.unsqueeze(-1)
        width = z.shape[-1]
        start = (dist.get_rank(group) if group is not None else 0) * width
        owned = (labels >= start) & (labels < start + width)
        local = torch.where(owned, labels - start, torch.zeros_like(labels))
        target = z.gather(-1, local.unsqueeze(-1)).squeeze(-1) * owned
        _all_reduce(target, dist.ReduceOp.SUM, group)
        exp = z.exp()
        sum_exp = exp.sum(dim=-1)
        _all_reduce(sum_exp, dist.ReduceOp.SUM, group)
        ctx.save_for_backward(exp / sum_exp.unsqueeze(-1), local, owned)
        ctx.in_dtype = shard.dtype
        return target - sum_exp.log()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        softmax, local, owned = ctx.saved_tensors
        grad = -softmax
        grad.scatter_add_(-1, local.unsqueeze(-1), owned.unsqueeze(-1).to(grad.dtype))
        return (grad * grad_out.unsqueeze(-1)).to(ctx.in_dtype), None, None


class _VocabParallelEntropy(torch.autograd.Function):
    """Entropy from vocab-sharded logits: H = log Z - E_p[z]; dH/dz_j = -p_j (z_j - E_p[z]) (local)."""

    @staticmethod
    def forward(ctx, shard: torch.Tensor, group) -> torch.Tensor:
        z = shard.float()
        zmax = z.max(dim=-1).values
        _all_reduce(zmax, dist.ReduceOp.MAX, group)
        z = z - zmax.unsqueeze(-1)
        exp = z.exp()
        sums = torch.stack([exp.sum(-1), (exp * z).sum(-1)])
        _all_reduce(sums, dist.ReduceOp.SUM, group)
        sum_exp, sum_ez = sums[0], sums[1]
        mean_z = sum_ez / sum_exp
        ctx.save_for_backward(exp / sum_exp.unsqueeze(-1), z, mean_z)
        ctx.in_dtype = shard.dtype
        return sum_exp.log() - mean_z

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        p, z, mean_z = ctx.saved_tensors
        grad = -p * (z - mean_z.unsqueeze(-1))
        return (grad * grad_out.unsqueeze(-1)).to(ctx.in_dtype), None


def vocab_parallel_logprobs(
    logits_shard: torch.Tensor, labels: torch.Tensor, tp_group=None, temperature: float = 1.0
) -> torch.Tensor:
    """`token_logprobs` for logits split over the vocabulary across the ranks of `tp_group` (equal
    shards in rank order, as Megatron's ColumnParallelLinear output layer makes them); `labels` are
    global ids. Every rank gets the same fp32 result; gradients flow to each rank's own shard.
    `tp_group=None`: the logits are the whole vocabulary (no collective at all)."""
    if temperature != 1.0:
        logits_shard = logits_shard / temperature
    return _VocabParallelLogprob.apply(logits_shard, labels, tp_group)


def vocab_parallel_entropy(
    logits_shard: torch.Tensor, tp_group=None, temperature: float = 1.0
) -> torch.Tensor:
    """`entropy_from_logits` for vocab-sharded logits (see `vocab_parallel_logprobs`)."""
    if temperature != 1.0:
        logits_shard = logits_shard / temperature
    return _VocabParallelEntropy.apply(logits_shard, tp_group)


# ---- the policy loss ----------------------------------------------------------------------------------
def _per_token_advantages(advantages: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)
    return advantages.float().expand_as(like)


def policy_loss_sums(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    aggregation: str = "token_mean",
    engine_logprobs: torch.Tensor | None = None,
    tis_cap: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """(loss_sum, count, stat sums) of one microbatch; tensors [B, S], `advantages` [B] or [B, S].

    The step's loss is sum(loss_sum) / sum(count) over all microbatches and ranks (module docstring).
    `count` and the stats are detached; `loss_sum` carries the gradient. With `engine_logprobs` and
    `tis_cap > 0` the policy-gradient term is weighted by truncated importance sampling (module
    docstring).
    """
    if aggregation not in AGGREGATIONS:
        raise ConfigError("grpo.aggregation", f"must be one of {AGGREGATIONS}, got {aggregation!r}")
    m = mask.float()
    logprobs = logprobs.float()
    adv = _per_token_advantages(advantages, logprobs)
    log_ratio = logprobs - old_logprobs.float()
    ratio = torch.exp(log_ratio)
    clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(-ratio * adv, -clipped * adv)
    stats: dict[str, torch.Tensor] = {}
    if engine_logprobs is not None and tis_cap > 0:
        per_token, stats = _tis(per_token, old_logprobs, engine_logprobs, m, tis_cap)
    if ref_logprobs is not None:
        d = ref_logprobs.float() - logprobs
        k3 = torch.exp(d) - d - 1.0
        if kl_coef:
            per_token = per_token + kl_coef * k3
        stats["kl_sum"] = (k3.detach() * m).sum()
    if aggregation == "token_mean":
        loss_sum = (per_token * m).sum()
        count = m.sum()
    else:
        lengths = m.sum(-1)
        has = lengths > 0
        loss_sum = ((per_token * m).sum(-1)[has] / lengths[has]).sum()
        count = has.sum().float()
    with torch.no_grad():
        low = (ratio < 1.0 - clip_low) & (adv < 0)
        high = (ratio > 1.0 + clip_high) & (adv > 0)
        active = m > 0
        stats.update(
            tokens=m.sum(),
            clip_low_sum=(low & active).sum().float(),
            clip_high_sum=(high & active).sum().float(),
            approx_kl_sum=(0.5 * log_ratio.square() * m).sum(),
            ratio_sum=(ratio * m).sum(),
            ratio_max=torch.where(active, ratio, torch.zeros_like(ratio)).max()
            if active.any()
            else ratio.new_zeros(()),
            pg_loss_sum=(per_token * m).sum(),
        )
    return loss_sum, count.detach(), {k: v.detach() for k, v in stats.items()}


def _tis(
    per_token: torch.Tensor, old: torch.Tensor, engine: torch.Tensor, m: torch.Tensor, cap: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The policy-gradient term weighted by min(exp(old - engine), cap), and the weights' stat sums."""
    with torch.no_grad():
        raw = torch.exp(old.float() - engine.float())
        weight = torch.clamp(raw, max=cap)
        stats = {
            "tis_weight_sum": (weight * m).sum(),
            "tis_clipped_sum": ((raw > cap) & (m > 0)).sum().float(),
        }
    return weight * per_token, stats


def empty_stats(with_kl: bool = False, device="cpu", with_tis: bool = False) -> dict[str, torch.Tensor]:
    """The stat sums of no tokens at all: what a rank with an empty slice contributes (same keys)."""
    none = torch.zeros(0, 1, device=device)
    ref = none if with_kl else None
    engine, cap = (none, 1.0) if with_tis else (None, 0.0)
    adv = torch.zeros(0, device=device)
    return policy_loss_sums(none, none, adv, none, ref_logprobs=ref, engine_logprobs=engine, tis_cap=cap)[2]


def merge_stats(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Stat sums of two microbatches (keys ending in `_max` take the max)."""
    out = dict(a)
    for k, v in b.items():
        if k not in out:
            out[k] = v
        else:
            out[k] = torch.maximum(out[k], v) if k.endswith("_max") else out[k] + v
    return out


def all_reduce_stats(stats: dict[str, torch.Tensor], group=None) -> dict[str, torch.Tensor]:
    """Stat sums over the ranks of `group` (on copies); `stats` itself when there is nothing to reduce
    (no torch.distributed, or a group of one rank)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
        return stats
    out = {}
    for k in sorted(stats):
        v = stats[k].clone()
        dist.all_reduce(v, op=dist.ReduceOp.MAX if k.endswith("_max") else dist.ReduceOp.SUM, group=group)
        out[k] = v
    return out


def finalize_stats(stats: dict[str, torch.Tensor]) -> dict[str, float]:
    """Means per loss token: clip_fraction (+ low/high), approx_kl (k2 of new vs old), kl (k3 vs the
    reference, when given), ratio_mean, ratio_max, pg_loss (per-token objective incl. the KL term), and
    with TIS the mean weight and the fraction of tokens whose weight was capped."""
    n = max(float(stats["tokens"]), 1.0)
    out = {
        "clip_fraction": float(stats["clip_low_sum"] + stats["clip_high_sum"]) / n,
        "clip_fraction_low": float(stats["clip_low_sum"]) / n,
        "clip_fraction_high": float(stats["clip_high_sum"]) / n,
        "approx_kl": float(stats["approx_kl_sum"]) / n,
        "ratio_mean": float(stats["ratio_sum"]) / n,
        "ratio_max": float(stats["ratio_max"]),
        "pg_loss": float(stats["pg_loss_sum"]) / n,
        "tokens": float(stats["tokens"]),
    }
    if "kl_sum" in stats:
        out["kl"] = float(stats["kl_sum"]) / n
    if "tis_weight_sum" in stats:
        out["tis/mean_weight"] = float(stats["tis_weight_sum"]) / n
        out["tis/clipped_frac"] = float(stats["tis_clipped_sum"]) / n
    return out


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    aggregation: str = "token_mean",
) -> tuple[torch.Tensor, dict[str, float]]:
    """(loss, stats) of a batch that is a whole step by itself: `policy_loss_sums` normalized here."""
    loss_sum, count, stats = policy_loss_sums(
        logprobs, old_logprobs, advantages, mask, clip_low, clip_high, ref_logprobs, kl_coef, aggregation
    )
    return loss_sum / count.clamp(min=1.0), finalize_stats(stats)
