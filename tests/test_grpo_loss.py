"""GRPO losses: advantages, the clipped objective, KL, aggregation, log-probs (full and vocab-parallel)."""

from __future__ import annotations

import math

import pytest
import torch
from _dist import run_distributed  # noqa: I001

from mtr_hpc.errors import ConfigError
from mtr_hpc.train.grpo_loss import (
    all_reduce_stats,
    drop_uniform_groups,
    entropy_from_logits,
    finalize_stats,
    group_advantages,
    merge_stats,
    policy_loss,
    policy_loss_sums,
    token_logprobs,
    vocab_parallel_entropy,
    vocab_parallel_logprobs,
)


def test_group_advantages_known_numbers():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    adv = group_advantages(r, 4)  # eps keeps the uniform group at 0, not 0/0
    std = math.sqrt(1 / 3) + 1e-6  # sample std of (1, 0, 0, 1), plus eps
    expected = torch.tensor([0.5 / std, -0.5 / std, -0.5 / std, 0.5 / std, 0.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(
        group_advantages(r, 4, scale_std=False), torch.tensor([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0])
    )
    assert torch.equal(group_advantages(torch.tensor([3.0, 5.0]), 1), torch.zeros(2))
    assert torch.isfinite(group_advantages(torch.full((4,), 7.0), 2)).all()
    with pytest.raises(ConfigError):
        group_advantages(r, 3)


def test_drop_uniform_groups():
    r = torch.tensor([1.0, 1.0, 0.0, 1.0, -0.5, -0.5])
    assert drop_uniform_groups(r, 2).tolist() == [False, False, True, True, False, False]
    assert drop_uniform_groups(torch.tensor([1.0, 1.05]), 2, tol=0.1).tolist() == [False, False]


def _one_token(ratio, adv, cl=0.2, ch=0.28):
    lp = torch.tensor([[math.log(ratio)]], requires_grad=True)
    loss, stats = policy_loss(lp, torch.zeros(1, 1), torch.tensor([adv]), torch.ones(1, 1), cl, ch)
    loss.backward()
    return loss.item(), lp.grad.item(), stats


@pytest.mark.parametrize(
    "ratio, adv, loss, grad, clipped",
    [
        (1.5, 1.0, -1.28, 0.0, True),  # above 1+ch with A > 0: clipped, no gradient
        (1.5, -1.0, 1.5, 1.5, False),  # above 1+ch with A < 0: unclipped (pessimistic), gradient flows
        (0.5, -1.0, 0.8, 0.0, True),  # below 1-cl with A < 0: clipped
        (0.5, 1.0, -0.5, -0.5, False),  # below 1-cl with A > 0: unclipped
        (1.1, 2.0, -2.2, -2.2, False),  # inside the range
        (1.25, 1.0, -1.25, -1.25, False),  # inside [1-cl, 1+ch] thanks to the higher upper clip
    ],
)
def test_clip_behaviour(ratio, adv, loss, grad, clipped):
    got_loss, got_grad, stats = _one_token(ratio, adv)
    assert got_loss == pytest.approx(loss) and got_grad == pytest.approx(grad, abs=1e-6)
    assert stats["clip_fraction"] == (1.0 if clipped else 0.0)
    assert stats["ratio_mean"] == pytest.approx(ratio)


def test_k3_kl_nonnegative_and_zero_when_equal():
    torch.manual_seed(0)
    lp, ref = -torch.rand(4, 6) * 3, -torch.rand(4, 6) * 3
    mask = torch.ones(4, 6)
    _, stats = policy_loss(lp, lp, torch.zeros(4), mask, ref_logprobs=ref, kl_coef=0.1)
    assert stats["kl"] > 0
    d = ref - lp
    assert stats["kl"] == pytest.approx((torch.exp(d) - d - 1).mean().item(), rel=1e-5)
    loss, stats = policy_loss(lp, lp, torch.zeros(4), mask, ref_logprobs=lp.clone(), kl_coef=0.1)
    assert stats["kl"] == 0.0 and loss.item() == 0.0
    # With zero advantages the loss is kl_coef * k3 exactly.
    loss, _ = policy_loss(lp, lp, torch.zeros(4), mask, ref_logprobs=ref, kl_coef=0.1)
    assert loss.item() == pytest.approx(0.1 * (torch.exp(d) - d - 1).mean().item(), rel=1e-5)


def test_tis_with_identical_logprobs_weighs_one_and_changes_nothing():
    torch.manual_seed(1)
    lp, old = -torch.rand(3, 5) * 2, -torch.rand(3, 5) * 2
    adv, mask = torch.tensor([1.0, -0.5, 2.0]), (torch.rand(3, 5) > 0.3).float()
    plain = policy_loss_sums(lp, old, adv, mask)
    tis = policy_loss_sums(lp, old, adv, mask, engine_logprobs=old.clone(), tis_cap=2.0)
    assert torch.equal(plain[0], tis[0]) and torch.equal(plain[1], tis[1])
    stats = finalize_stats(tis[2])
    assert stats["tis/mean_weight"] == 1.0 and stats["tis/clipped_frac"] == 0.0


def test_tis_weights_a_known_mismatch_as_computed_by_hand():
    old = torch.log(torch.tensor([[0.5, 0.2, 0.9, 0.3]]))
    engine = torch.log(torch.tensor([[0.25, 0.4, 0.1, 0.3]]))
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the last token is an observation: not trained
    lp = old.clone().requires_grad_(True)
    loss_sum, count, stats = policy_loss_sums(
        lp, old, torch.tensor([1.5]), mask, engine_logprobs=engine, tis_cap=3.0
    )
    weights = [2.0, 0.5, 3.0]  # p_trainer / p_engine = 2, 0.5 and 9, capped at 3
    assert loss_sum.item() == pytest.approx(-1.5 * sum(weights), rel=1e-6) and count.item() == 3
    loss_sum.backward()  # d/d logp of -w * r * A at r = 1
    assert lp.grad[0, :3].tolist() == pytest.approx([-1.5 * w for w in weights], rel=1e-6)
    assert lp.grad[0, 3].item() == 0.0
    out = finalize_stats(stats)
    assert out["tis/mean_weight"] == pytest.approx(sum(weights) / 3, rel=1e-6)
    assert out["tis/clipped_frac"] == pytest.approx(1 / 3)
    # TIS off: the same call without engine log-probs is the plain objective.
    assert policy_loss_sums(old, old, torch.tensor([1.5]), mask)[0].item() == pytest.approx(-4.5)


def test_aggregation_modes_and_step_normalization():
    lp = torch.zeros(2, 4)
    adv = torch.tensor([1.0, -2.0])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.float32)
    # per-token loss = -A (ratio 1): [-1, -1, -1] and [2]
    tok, _ = policy_loss(lp, lp, adv, mask, aggregation="token_mean")
    seq, _ = policy_loss(lp, lp, adv, mask, aggregation="seq_mean_token_mean")
    assert tok.item() == pytest.approx((-3 + 2) / 4) and seq.item() == pytest.approx((-1 + 2) / 2)
    with pytest.raises(ConfigError):
        policy_loss(lp, lp, adv, mask, aggregation="mean")
    # Microbatches: sums over the step / the step's count == the whole batch at once.
    torch.manual_seed(1)
    new = -torch.rand(6, 5, requires_grad=True)
    old, a = new.detach() + 0.3 * torch.randn(6, 5), torch.randn(6)
    m = (torch.rand(6, 5) > 0.3).float()
    for agg in ("token_mean", "seq_mean_token_mean"):
        whole, whole_stats = policy_loss(new, old, a, m, aggregation=agg)
        parts = [
            policy_loss_sums(new[s], old[s], a[s], m[s], aggregation=agg) for s in (slice(0, 2), slice(2, 6))
        ]
        total = sum(p[1] for p in parts)
        stepped = sum(p[0] for p in parts) / total
        torch.testing.assert_close(stepped, whole)
        merged = merge_stats(parts[0][2], parts[1][2])
        assert all_reduce_stats(merged) is merged  # no process group, or one rank: unchanged
        for k, v in finalize_stats(merged).items():
            assert v == pytest.approx(whole_stats[k], rel=1e-5), k
    # Per-token advantages [B, S] are used as given.
    per_tok, _ = policy_loss(lp, lp, adv.unsqueeze(-1).expand(2, 4), mask)
    assert per_tok.item() == pytest.approx(tok.item())


def test_token_logprobs_and_entropy_match_reference():
    torch.manual_seed(2)
    logits = torch.randn(3, 5, 11, dtype=torch.bfloat16)
    labels = torch.randint(0, 11, (3, 5))
    ref = torch.log_softmax(logits.float() / 0.7, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    got = token_logprobs(logits, labels, temperature=0.7, chunk_rows=4)
    assert got.dtype == torch.float32 and got.shape == labels.shape
    torch.testing.assert_close(got, ref)
    p = torch.softmax(logits.float(), -1)
    torch.testing.assert_close(entropy_from_logits(logits, chunk_rows=2), -(p * p.log()).sum(-1))
    masked = torch.tensor([[0.0, 0.0, float("-inf")]])
    torch.testing.assert_close(entropy_from_logits(masked), torch.tensor([math.log(2.0)]))


def _tp_worker(rank, world, full, labels, temperature):
    import torch.distributed as dist

    shard = full.chunk(world, dim=-1)[rank].clone().requires_grad_(True)
    lp = vocab_parallel_logprobs(shard, labels, dist.group.WORLD, temperature=temperature)
    ent = vocab_parallel_entropy(shard, dist.group.WORLD, temperature=temperature)
    weights = torch.linspace(0.5, 1.5, lp.numel()).view(lp.shape)
    ((lp * weights).sum() + ent.sum()).backward()
    # Plain lists: tensors would travel as shared-memory handles that die with the worker.
    return lp.tolist(), ent.tolist(), shard.grad.tolist()


@pytest.mark.slow
def test_vocab_parallel_tp2_matches_full_vocab():
    torch.manual_seed(3)
    full, labels, temperature = torch.randn(2, 3, 16) * 3, torch.randint(0, 16, (2, 3)), 0.8
    results = run_distributed(_tp_worker, 2, full, labels, temperature, timeout=120)
    ref_full = full.clone().requires_grad_(True)
    lp = token_logprobs(ref_full, labels, temperature=temperature)
    ent = entropy_from_logits(ref_full, temperature=temperature)
    weights = torch.linspace(0.5, 1.5, lp.numel()).view(lp.shape)
    ((lp * weights).sum() + ent.sum()).backward()
    for rank, (lp_r, ent_r, grad_r) in enumerate(results):
        torch.testing.assert_close(torch.tensor(lp_r), lp.detach())
        torch.testing.assert_close(torch.tensor(ent_r), ent.detach())
        torch.testing.assert_close(torch.tensor(grad_r), ref_full.grad.chunk(2, dim=-1)[rank])
