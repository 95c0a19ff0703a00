"""A tiny end-to-end pipeline through `mtr demo`: four stages chained, reruns skip, W&B logs offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mtr_hpc.demo import results_table, run_demo
from mtr_hpc.wandb_offline import logged

REPO = Path(__file__).resolve().parents[1]


def _tiny_config(path: Path) -> Path:
    tiny = str(REPO / "configs" / "models" / "tiny-llama")
    cfg = {
        "synth": {
            "sources": [
                {"benchmark": "hotpotqa", "path": "sample", "part": "train", "limit": 6},
                {"benchmark": "2wiki", "path": "sample", "part": "train", "limit": 6},
            ],
            "progress": False,
        },
        "sft": {
            "device": "cpu", "init": "random", "tokenizer": "smollm2-135m",
            "model": {"hf": tiny, "layer_spec": "sdpa", "seq_length": 2048},
            "data": {"seq_len": 1536, "heldout_fraction": 0.2, "tools_format": "compact"},
            "train": {"steps": 2, "global_batch_rows": 1, "micro_batch_rows": 1, "eval_every": 1, "save_every": 2},
            "optim": {"lr": 1.0e-3},
        },
        "grpo": {
            "device": "cpu", "init": "pretrained", "model": {"layer_spec": "sdpa", "seq_length": 2048},
            "data": [{"name": "hotpotqa", "source": "sample", "part": "train", "limit": 4}],
            "algo": {"group_size": 2, "prompts_per_step": 1, "kl_coef": 0.01},
            "rollout": {"device": "cpu"},
            "env": {"max_turns": 2, "max_tokens": 1536, "max_turn_tokens": 12},
            "train": {"steps": 1, "save_every": 1},
        },
        "eval": {
            "benchmarks": [{"name": "hotpotqa", "source": "sample", "part": "heldout", "limit": 2}],
            "modes": ["direct", "tools"],
            "generation": {"max_turns": 2, "max_new_tokens": 8, "max_tokens": 1536},
            "progress": False,
        },
    }  # fmt: skip
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run_file(stage_dir: Path) -> Path:
    files = sorted(stage_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert files, f"no offline W&B run under {stage_dir}"
    return files[-1]


def test_tiny_pipeline_end_to_end_with_offline_wandb(tmp_path, monkeypatch):
    from mtr_hpc.models.registry import cache_dir

    monkeypatch.setenv("MTR_HPC_CACHE", str(cache_dir()))  # keep the converted model while HOME moves
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc key: offline by default
    config = _tiny_config(tmp_path / "demo-tiny.yaml")
    run = tmp_path / "pipe"
    # The eval compares the two trained stages (the demo's untrained model is the 135M SmolLM2).
    models = f"eval.models=[{{name: sft, path: {run / 'sft'}}}, {{name: grpo, path: {run / 'grpo'}}}]"
    lines: list[str] = []
    summary = run_demo(config, run, [models], lines.append)
    assert set(summary["timings_s"]) == {"synth", "sft", "grpo", "eval"}
    report = Path(summary["report"])
    table = results_table(report)
    assert table.startswith("|") and "sft" in table and "grpo" in table
    # The tools format SFT trained with travels with the model: GRPO prompted with it and kept it.
    from mtr_hpc.trace.chat_format import read_tools_format

    assert read_tools_format(run / "sft" / "hf") == read_tools_format(run / "grpo" / "hf") == "compact"

    expected = {
        "sft": [
            "sft/loss",
            "sft/lr",
            "sft/grad_norm",
            "sft/tokens_per_s",
            "sft/masked_fraction",
            "timing_s/step",
        ],
        "grpo": [
            "grpo/reward/total",
            "grpo/reward/valid",
            "grpo/kl",
            "grpo/logprob_abs_diff",
            "timing_s/rollout",
        ],
    }
    for stage, keys in expected.items():
        data = logged(_run_file(run / stage))
        assert data["group"] == run.name and data["job_type"] == stage
        assert data["history"], stage
        for key in keys:
            assert key in data["history"][0], (stage, key)
    ev = logged(_run_file(run / "eval"))
    assert ev["group"] == run.name
    assert any(k.startswith("eval/sft/tools/hotpotqa/") for k in ev["history"][0])

    # A rerun skips every finished stage.
    again: list[str] = []
    run_demo(config, run, [models], again.append)
    assert sum("skipped" in line for line in again) == 4


def test_bad_stage_override_names_the_key(tmp_path):
    from mtr_hpc.errors import ConfigError

    config = _tiny_config(tmp_path / "demo-tiny.yaml")
    with pytest.raises(ConfigError, match="lrr"):
        run_demo(config, tmp_path / "bad", ["synth.progress=false", "sft.optim.lrr=1"], lambda _: None)
