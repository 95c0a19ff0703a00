"""A tiny end-to-end pipeline through `mtr demo`: four stages chained, reruns skip, W&B logs offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from _paths import REPO

from mtr_hpc.demo import results_table, run_demo
from mtr_hpc.tracking import read_metrics
from mtr_hpc.wandb_offline import logged


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
        "profiles": {"full": {"grpo": {"train": {"steps": 3}}, "eval": {"modes": ["tools"]}}},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run_file(stage_dir: Path) -> Path:
    files = sorted(stage_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert files, f"no offline W&B run under {stage_dir}"
    return files[-1]


@pytest.mark.slow
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
    assert Path(summary["report"]).is_file()
    table = results_table(Path(summary["results"]))
    assert table.startswith("| model | setting |") and "| sft | tools/grounded |" in table and "grpo" in table
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
    assert any(k.startswith("eval/sft/tools/grounded/hotpotqa/") for k in ev["history"][0])

    # A rerun skips every finished stage.
    again: list[str] = []
    run_demo(config, run, [models], again.append)
    assert sum("skipped" in line for line in again) == 4

    # Another profile shares synth and SFT, and trains and evaluates in its own directories.
    full: list[str] = []
    models_full = models.replace(str(run / "grpo"), str(run / "grpo-full"))
    summary = run_demo(config, run, [models_full], full.append, profile="full")
    assert sum("skipped" in line for line in full) == 2
    assert set(summary["timings_s"]) == {"synth", "sft", "grpo-full", "eval-full"}  # its stages, shared too
    assert summary["grpo_reward"]["steps"] == 3
    assert len(read_metrics(run / "grpo-full")) == 3
    results = json.loads((run / "eval-full" / "results.json").read_text())
    assert results["settings"] == ["tools/grounded"]
    assert json.loads((run / "demo.json").read_text()).keys() >= {"grpo", "grpo-full", "eval-full"}


def test_profiles_become_stage_values_and_unknown_ones_are_refused(tmp_path):
    from mtr_hpc.config import load_config
    from mtr_hpc.demo import profile_values, stage_dirs
    from mtr_hpc.errors import ConfigError
    from mtr_hpc.eval.config import EvalConfig, validate_config
    from mtr_hpc.train.grpo_config import GRPOConfig

    config = _tiny_config(tmp_path / "demo-tiny.yaml")
    assert profile_values(config, "full") == {"grpo": {"train.steps": 3}, "eval": {"modes": ["tools"]}}
    assert profile_values(config, "quick") == {}
    assert stage_dirs("full") == {"synth": "synth", "sft": "sft", "grpo": "grpo-full", "eval": "eval-full"}
    with pytest.raises(ConfigError, match="unknown demo profile 'long'.*quick, full"):
        run_demo(config, tmp_path / "x", [], lambda _: None, profile="long")
    assert not (tmp_path / "x").exists()
    for bad, key in (({"full": [1]}, "profiles.full"), ({"full": {"evl": {}}}, "profiles.full.evl")):
        broken = tmp_path / "broken.yaml"
        broken.write_text(yaml.safe_dump({"profiles": bad}))
        with pytest.raises(ConfigError, match=key):
            profile_values(broken, "full")
    # Values of every kind come through the stage's own loader as written in the profile.
    typed = tmp_path / "typed.yaml"
    profile = {
        "out": "run 1",
        "progress": False,
        "envs": ["grounded"],
        "retrieval": {"corpus": "other.jsonl", "results": {"top_k": 4}},
    }
    typed.write_text(
        yaml.safe_dump({"eval": {"models": [], "benchmarks": []}, "profiles": {"p": {"eval": profile}}})
    )
    cfg = load_config(EvalConfig, typed, section="eval", values=profile_values(typed, "p")["eval"])
    assert (cfg.out, cfg.progress, cfg.envs, cfg.retrieval.corpus, cfg.retrieval.results.top_k) == (
        "run 1",
        False,
        ["grounded"],
        "other.jsonl",
        4,
    )
    # The shipped demo config's full profile loads into valid stage configs.
    demo = REPO / "configs" / "demo.yaml"
    full = profile_values(demo, "full")
    grpo = load_config(GRPOConfig, demo, section="grpo", values=full["grpo"])
    assert (grpo.train.steps, grpo.optim.lr) == (12, 1.0e-5)
    ev = validate_config(
        load_config(
            EvalConfig, demo, ["models=[{name: a, path: smollm2-135m}]"], section="eval", values=full["eval"]
        )
    )
    assert (ev.modes, ev.envs) == (["direct", "tools"], ["grounded", "retrieval"])
    # The full profile evaluates every held-out question; the default profile 20 a benchmark.
    assert [b.limit for b in ev.benchmarks] == [0, 0, 0, 0]
    quick = load_config(EvalConfig, demo, ["models=[{name: a, path: smollm2-135m}]"], section="eval")
    assert [b.limit for b in quick.benchmarks] == [20, 20, 20, 20]
    # The simulator's noise rises over the full profile's steps.
    assert (grpo.toolactor.noise_at(0), grpo.toolactor.noise_at(12)) == (0.1, 0.3)
    retrieval = profile_values(demo, "retrieval")
    assert load_config(GRPOConfig, demo, section="grpo", values=retrieval["grpo"]).tools == "retrieval"


def test_bad_stage_override_names_the_key(tmp_path):
    from mtr_hpc.errors import ConfigError

    config = _tiny_config(tmp_path / "demo-tiny.yaml")
    with pytest.raises(ConfigError, match="lrr"):
        run_demo(config, tmp_path / "bad", ["synth.progress=false", "sft.optim.lrr=1"], lambda _: None)


def test_every_profile_of_the_shipped_demo_config_loads():
    """A profile's keys are checked when it runs; this catches a misspelt key before a user does."""
    from mtr_hpc.demo import profile_values
    from mtr_hpc.stages import STAGES

    config = REPO / "configs" / "demo.yaml"
    names = list(yaml.safe_load(config.read_text())["profiles"])
    assert "llm-tools" in names
    for name in names:
        for stage, values in profile_values(config, name).items():
            STAGES[stage].load(config, values=values)
    grpo = STAGES["grpo"].load(config, values=profile_values(config, "llm-tools")["grpo"])
    assert grpo.toolactor.backend == "llm" and grpo.tool_llm.backend == "transformers"
