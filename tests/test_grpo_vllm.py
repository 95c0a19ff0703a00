"""GRPO with vLLM rollouts on CPU (`rollout.engine: vllm`): one rank, and two gloo ranks each holding an
engine through vLLM's external launcher, which must give the single rank's run."""

from __future__ import annotations

from pathlib import Path

import pytest
from _paths import REPO

pytest.importorskip("vllm", reason="vLLM is installed by `tools/setup.sh --test`")

# vLLM's CPU attention needs heads of 32 or more; the tiny config's model has 16.
MODEL = REPO / "configs/models/tiny-llama-h32"
KEYS = (
    "grpo/reward/total",
    "grpo/engine_kl",
    "grpo/logprob_abs_diff",
    "grpo/retokenization_drift",
    "grpo/tis/mean_weight",
    "grpo/loss",
    "grpo/grad_norm",
    "timing_s/weight_sync",
)


def _worker(rank, world, out):
    from mtr_hpc.config import load_config
    from mtr_hpc.tracking import read_metrics
    from mtr_hpc.train import grpo
    from mtr_hpc.train.grpo_config import GRPOConfig

    steps = []
    real_gather = grpo.gather_rollouts

    def gather(got):
        payload = real_gather(got)
        steps.append([ep.token_ids for ep in payload["episodes"]])
        return payload

    grpo.gather_rollouts = gather
    overrides = [f"out={out}", f"model.hf={MODEL}", "rollout.engine=vllm", "export_hf=false", "algo.tis=true"]
    grpo.run_grpo(load_config(GRPOConfig, REPO / "configs/grpo-tiny.yaml", overrides))
    rows = [{k: r.get(k) for k in KEYS} for r in read_metrics(Path(out))] if rank == 0 else None
    return {"steps": steps, "rows": rows}


@pytest.mark.slow
def test_grpo_on_vllm_tracks_the_trainer_and_two_ranks_give_one(tmp_path):
    from _dist import run_distributed

    (one,) = run_distributed(_worker, 1, str(tmp_path / "one"), timeout=300)
    assert len(one["rows"]) == 2
    for row in one["rows"]:
        assert None not in row.values(), row
        assert 0 <= row["grpo/engine_kl"] <= 1e-3  # fp32: the engine samples with the trainer's policy
        assert row["grpo/logprob_abs_diff"] < 1e-3
        assert row["grpo/tis/mean_weight"] == pytest.approx(1.0, abs=1e-3)
    two = run_distributed(_worker, 2, str(tmp_path / "two"), timeout=300)
    assert two[0]["steps"] == two[1]["steps"] == one["steps"]  # the same episodes, token for token
    for a, b in zip(one["rows"], two[0]["rows"], strict=True):
        assert b["grpo/reward/total"] == a["grpo/reward/total"]
        assert b["grpo/loss"] == pytest.approx(a["grpo/loss"], rel=1e-4, abs=1e-7)
