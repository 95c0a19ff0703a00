"""GRPO on CPU with the tiny config: mechanics, trainer/engine agreement, exact resume, NaN handling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _paths import REPO

from mtr_hpc.config import load_config
from mtr_hpc.tracking import read_metrics
from mtr_hpc.train.grpo_config import GRPOConfig


def _cfg(out: Path, *extra: str) -> GRPOConfig:
    return load_config(
        GRPOConfig,
        REPO / "configs" / "grpo-tiny.yaml",
        [f"out={out}", f"model.hf={REPO / 'configs/models/tiny-llama'}", *extra],
    )


def _metrics(run: Path) -> list[dict]:
    return read_metrics(run)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from mtr_hpc.train.grpo import run_grpo

    out = tmp_path_factory.mktemp("grpo") / "run"
    summary = run_grpo(_cfg(out))
    return out, summary


def test_tiny_run_logs_every_phase(tiny_run):
    out, summary = tiny_run
    rows = _metrics(out)
    assert [r["step"] for r in rows] == [0, 1]
    for key in (
        "grpo/reward/total",
        "grpo/reward/correct",
        "grpo/reward/consist",
        "grpo/reward/valid",
        "grpo/em",
        "grpo/response_length",
        "grpo/turns",
        "grpo/tool_calls",
        "grpo/kl",
        "grpo/clip_fraction",
        "grpo/entropy",
        "grpo/grad_norm",
        "grpo/logprob_abs_diff",
        "grpo/engine_kl",
        "grpo/retokenization_drift",
        "grpo/toolsim/calls",
        "grpo/toolsim/latency_s",
        "timing_s/rollout",
        "timing_s/reward",
        "timing_s/reference",
        "timing_s/train",
        "timing_s/weight_sync",
        "grpo/weight_sync_gb_per_s",
    ):
        assert key in rows[0], key
    # fp32 on CPU: the trainer scores the sampled tokens as the engine did
    assert all(r["grpo/logprob_abs_diff"] < 1e-3 for r in rows)
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_000002"
    assert (Path(summary["hf_dir"]) / "model.safetensors").exists()


def test_tis_on_cpu_weighs_about_one(tmp_path):
    """fp32 on a CPU: the engine samples with the trainer's own log-probs, so every TIS weight is ~1."""
    from mtr_hpc.train.grpo import run_grpo

    run_grpo(_cfg(tmp_path / "tis", "train.steps=1", "export_hf=false", "algo.tis=true", "algo.tis_cap=2.0"))
    (row,) = _metrics(tmp_path / "tis")
    assert row["grpo/tis/mean_weight"] == pytest.approx(1.0, abs=1e-3)
    assert row["grpo/tis/clipped_frac"] == 0.0 and 0 <= row["grpo/engine_kl"] < 1e-6


def test_engine_logits_equal_trainer_logits_after_sync():
    from mtr_hpc.models.gpt import forward_logits
    from mtr_hpc.models.parallel import init_parallel
    from mtr_hpc.models.registry import load_tokenizer
    from mtr_hpc.train.grpo_setup import build_engine, sync_weights
    from mtr_hpc.train.model_io import build_policy, hf_named_tensors, policy_source

    cfg = _cfg(Path("unused"))
    init_parallel(1, 1, seed=3)
    src = policy_source(cfg.model)
    model = build_policy(cfg.model, src, "random").eval()
    with torch.no_grad():  # a policy update: weights the engine has never seen
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    engine = build_engine(cfg, src.hf_config, load_tokenizer("smollm2-135m"))
    info = sync_weights(engine, hf_named_tensors(model, src))
    assert info["timing_s/weight_sync"] > 0
    ids = [1, 520, 9531, 198, 44, 17400, 46, 6004, 2, 198]
    with torch.no_grad():
        trainer = forward_logits(model, torch.tensor([ids]), vocab_size=src.arch.vocab_size)[0]
    got = engine.logits(ids)
    assert (trainer - got.to(trainer.dtype)).abs().max().item() < 1e-4


def test_killed_and_resumed_run_reproduces_rewards_and_losses(tiny_run, tmp_path):
    from mtr_hpc.train.grpo import run_grpo

    full = _metrics(tiny_run[0])
    run_grpo(_cfg(tmp_path / "r", "train.steps=1", "export_hf=false"))
    run_grpo(_cfg(tmp_path / "r", "train.steps=2", "export_hf=false"))
    resumed = _metrics(tmp_path / "r")
    assert [r["step"] for r in resumed] == [0, 1]
    for a, b in zip(full, resumed, strict=True):
        for key in ("grpo/reward/total", "grpo/loss", "grpo/response_length", "grpo/logprob_abs_diff"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), key


def test_nan_reward_stops_the_run_with_a_checkpoint(tmp_path, monkeypatch):
    from mtr_hpc.train import grpo, grpo_rollout
    from mtr_hpc.train.grpo_setup import RewardNaNError

    real = grpo_rollout.score_episode

    def nan_score(*args, **kwargs):
        out = real(*args, **kwargs)
        out.total = float("nan")
        return out

    monkeypatch.setattr(grpo_rollout, "score_episode", nan_score)
    with pytest.raises(RewardNaNError, match="step 0"):
        grpo.run_grpo(_cfg(tmp_path / "nan", "export_hf=false"))
    from mtr_hpc.train.checkpoint import latest_checkpoint, read_meta

    meta = read_meta(latest_checkpoint(tmp_path / "nan" / "checkpoints"))
    # The failed step's batch is not consumed: a resume retries it rather than skipping it.
    assert meta["step"] == 0 and meta["position"] == {"epoch": 0, "index": 0}


def test_fewer_prompts_than_replicas_is_refused_before_the_run_starts(tmp_path, monkeypatch):
    import torch.distributed as dist

    from mtr_hpc.errors import ConfigError
    from mtr_hpc.train import grpo

    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 3)
    with pytest.raises(
        ConfigError, match=r"algo.prompts_per_step.*2 prompt\(s\) a step for 3 ranks.*at least 3"
    ):
        grpo.run_grpo(_cfg(tmp_path / "r", "export_hf=false"))
    assert not (tmp_path / "r").exists()


def test_a_run_failure_exits_3_and_a_user_error_2(tmp_path, monkeypatch, capsys):
    from mtr_hpc.cli import main
    from mtr_hpc.train import grpo

    def nan_score(*args, **kwargs):
        raise grpo.RewardNaNError("reward of episode 0 at step 0 is nan")

    monkeypatch.setattr(grpo, "check_finite_rewards", nan_score)
    args = ["grpo", "--config", str(REPO / "configs/grpo-tiny.yaml"), "--out", str(tmp_path / "cli")]
    args += [f"model.hf={REPO / 'configs/models/tiny-llama'}", "export_hf=false"]
    assert main(args) == 3
    assert "run failed: reward of episode 0" in capsys.readouterr().err
    assert main([*args[:5], "train.steps=0"]) == 2


def _grpo_worker(rank, world, out, extra):
    from mtr_hpc.train import grpo

    shares, steps = [], []  # this rank's own episodes per step; the whole step's, gathered

    def share(*args, **kwargs):
        got = real_share(*args, **kwargs)
        shares.append(sorted(r.index for r in got["records"]))
        return got

    def gather(got):
        payload = real_gather(got)
        steps.append({"tokens": [ep.token_ids for ep in payload["episodes"]], "rewards": payload["rewards"]})
        return payload

    real_share, real_gather = grpo.rollout_share, grpo.gather_rollouts
    grpo.rollout_share, grpo.gather_rollouts = share, gather
    grpo.run_grpo(_cfg(Path(out), "export_hf=false", *extra))
    metrics = [
        {k: r.get(k) for k in ("grpo/reward/total", "grpo/loss", "grpo/grad_norm", "grpo/kl")}
        for r in _metrics(Path(out))
    ]
    return {"shares": shares, "steps": steps, "metrics": metrics if rank == 0 else None}


# 4 episodes a step in 3 updates (2, 1, 1 episodes): rank 1's share of the last two updates is empty.
# With tensor parallelism the two ranks are one data-parallel replica, and both still roll out (without
# the KL term: the reference's and the policy's sharded forwards differ in the last bits, and Adam turns
# a 1e-8 gradient into a full-size step, while with equal rewards the single rank's gradient is 0).
@pytest.mark.parametrize(
    "extra",
    [[], ["algo.minibatches=3"], ["model.tp=2", "algo.kl_coef=0.0"]],
    ids=["even", "empty-slice", "tensor-parallel"],
)
@pytest.mark.slow
def test_two_ranks_give_the_single_rank_run(tmp_path, extra):
    """Each rank rolls out its share of the prompts with its own engine; the gathered episodes, rewards
    and the training that follows are the single rank's."""
    from _dist import run_distributed

    single = [x for x in extra if not x.startswith("model.tp")]
    (one,) = run_distributed(_grpo_worker, 1, str(tmp_path / "one"), single, timeout=300)
    two = run_distributed(_grpo_worker, 2, str(tmp_path / "two"), extra, timeout=300)
    assert one["shares"] == [[0, 1, 2, 3]] * 2
    # two prompts: one each, its group together
    assert two[0]["shares"] == [[0, 1], [0, 1]] and two[1]["shares"] == [[2, 3], [2, 3]]
    assert two[0]["steps"] == two[1]["steps"] == one["steps"]  # the same episodes, token for token
    assert len(one["metrics"]) == len(two[0]["metrics"]) == 2
    for a, b in zip(one["metrics"], two[0]["metrics"], strict=True):
        assert b["grpo/reward/total"] == a["grpo/reward/total"]
        for key in ("grpo/loss", "grpo/grad_norm", "grpo/kl"):
            assert (a[key] is None) == (b[key] is None), key  # no KL without a KL term
            assert b[key] == (a[key] if a[key] is None else pytest.approx(a[key], rel=1e-4, abs=1e-7)), key


def test_a_vllm_rollout_whose_weights_leave_no_kv_cache_room_is_refused():
    from mtr_hpc.errors import ConfigError
    from mtr_hpc.train.grpo_setup import check_rollout_fits

    gib = 2**30
    check_rollout_fits(15 * gib, 80 * gib, 0.4)  # a 7B in bf16 in 32 GiB: fits
    with pytest.raises(ConfigError, match=r"rollout.gpu_memory_utilization.*28.0 GiB.*tensor-parallel"):
        check_rollout_fits(28 * gib, 80 * gib, 0.4)


def test_checkpoint_bytes_is_the_size_of_the_weight_files(tmp_path):
    from mtr_hpc.train.grpo_setup import checkpoint_bytes

    (tmp_path / "model-00001.safetensors").write_bytes(b"x" * 100)
    (tmp_path / "model-00002.safetensors").write_bytes(b"x" * 50)
    (tmp_path / "config.json").write_text("{}")
    assert checkpoint_bytes(str(tmp_path)) == 150
