"""Every shipped config loads into its stage's dataclasses (a renamed field breaks this, not a user)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _paths import CONFIGS

from mtr_hpc.config import load_config, read_yaml


def _stage_classes():
    from mtr_hpc.eval.config import EvalConfig, validate_config
    from mtr_hpc.synth.run_config import SynthRunConfig
    from mtr_hpc.train.grpo_config import GRPOConfig
    from mtr_hpc.train.sft_config import SFTConfig

    return {
        "synth": SynthRunConfig,
        "sft": SFTConfig,
        "grpo": GRPOConfig,
        "eval": EvalConfig,
    }, validate_config


def _stage_of(path: Path) -> str:
    for stage in ("synth", "sft", "grpo", "eval"):
        if path.stem.startswith(stage) or path.stem.endswith(stage):
            return stage
    raise AssertionError(f"cannot tell the stage of {path.name}; name it after its stage")


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_config_loads(path):
    classes, validate_eval = _stage_classes()
    data = read_yaml(path)
    sections = [s for s in classes if isinstance(data.get(s), dict)]
    if sections:  # a multi-stage file (demo.yaml)
        assert sections == list(classes), f"{path.name} should hold every stage"
        pairs = [(classes[s], s) for s in sections]
    else:
        pairs = [(classes[_stage_of(path)], None)]
    for cls, section in pairs:
        cfg = load_config(cls, path, [], section=section)
        if cls.__name__ == "EvalConfig" and cfg.models:
            validate_eval(cfg)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_configs_read_no_files_outside_what_a_user_has(path):
    # A user's checkout has no ../shared: shipped configs read samples, data/ files or the hub.
    assert "../shared" not in path.read_text(encoding="utf-8")


def test_training_sources_name_their_part_and_a_missing_part_is_an_error(tmp_path):
    from mtr_hpc.errors import ConfigError
    from mtr_hpc.train.grpo_config import GRPOConfig
    from mtr_hpc.train.grpo_setup import load_prompts

    for path in sorted(CONFIGS.glob("*.yaml")):
        data = read_yaml(path)
        for section in (data, data.get("synth") or {}, data.get("grpo") or {}):
            for src in [*(section.get("sources") or []), *(section.get("data") or [])]:
                if isinstance(src, dict):
                    assert src.get("part") in ("train", "all"), f"{path.name}: {src}"
    cfg = load_config(GRPOConfig, CONFIGS / "grpo-tiny.yaml", ["data=[{name: hotpotqa, source: sample}]"])
    with pytest.raises(ConfigError, match=r"data\[0\]\.part.*say which part"):
        load_prompts(cfg)


@pytest.mark.parametrize(
    ("stage", "override", "key"),
    [
        ("sft", "train.eval_every=0", "train.eval_every"),
        ("sft", "train.micro_batch_rows=3", "train.micro_batch_rows"),
        ("sft", "optim.min_lr=1.0", "optim.min_lr"),
        ("sft", "data.seq_len=1", "data.seq_len"),
        ("sft", "data.heldout_fraction=1.0", "data.heldout_fraction"),
        ("grpo", "algo.group_size=1", "algo.group_size"),
        ("grpo", "algo.minibatches=99", "algo.minibatches"),
        ("grpo", "env.max_tokens=0", "env.max_tokens"),
        ("grpo", "reward.beta=-1", "reward.beta"),
        ("grpo", "rollout.sleep_level=3", "rollout.sleep_level"),
        ("grpo", "train.save_every=0", "train.save_every"),
        ("grpo", "algo.tis_cap=0", "algo.tis_cap"),
        ("grpo", "tool_llm.backend=vllm", "tool_llm.backend"),
        ("grpo", "tool_llm.max_batch=0", "tool_llm.max_batch"),
        ("eval", "llm.backend=telepathy", "llm.backend"),
        ("synth", "num_shards=0", "num_shards"),
    ],
)
def test_a_bad_value_is_refused_when_the_config_loads(stage, override, key):
    # Cross-field and range checks run in the config classes, before a stage loads a model.
    from mtr_hpc.errors import ConfigError

    classes, _ = _stage_classes()
    with pytest.raises(ConfigError) as err:
        load_config(classes[stage], CONFIGS / "demo.yaml", [override], section=stage)
    assert err.value.key == key


def test_the_cli_refuses_a_bad_stage_config_before_any_work(capsys):
    from mtr_hpc.cli import main

    assert main(["sft", "--config", str(CONFIGS / "sft-tiny.yaml"), "train.eval_every=0"]) == 2
    assert "config key 'train.eval_every': must be >= 1, got 0" in capsys.readouterr().err


def test_training_configs_build_from_their_defaults():
    # A stage run without --config gets the defaults; they must pass the checks run when a config loads.
    from mtr_hpc.train.grpo_config import GRPOConfig
    from mtr_hpc.train.sft_config import SFTConfig

    assert SFTConfig().train.eval_every >= 1 and GRPOConfig().algo.group_size >= 2
