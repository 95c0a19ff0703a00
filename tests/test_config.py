"""The config system: YAML + dotted overrides into typed dataclasses, errors that name the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from mtr_hpc.config import apply_overrides, from_dict, load_config, save_resolved, to_dict
from mtr_hpc.errors import ConfigError


@dataclass
class OptimConfig:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    warmup_steps: int = 0


@dataclass
class ModelConfig:
    path: str = "smollm2-135m"
    spec: Literal["cpu", "local", "te"] = "cpu"
    checkpoint: str | None = None


@dataclass
class StageConfig:
    out: Path = Path("runs/x")
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    tags: list[str] = field(default_factory=list)
    fp8: bool = False


@dataclass
class TwoModels:
    # The same section class with another default for this field.
    policy: ModelConfig = field(default_factory=ModelConfig)
    tools: ModelConfig = field(default_factory=lambda: ModelConfig(path="tool-model", spec="local"))


def test_a_section_given_in_part_keeps_its_fields_own_defaults(tmp_path):
    cfg = load_config(TwoModels, None, ["tools.checkpoint=ckpt", "policy.checkpoint=p"])
    assert (cfg.tools.path, cfg.tools.spec, cfg.tools.checkpoint) == ("tool-model", "local", "ckpt")
    assert (cfg.policy.path, cfg.policy.spec) == ("smollm2-135m", "cpu")
    from_file = load_config(TwoModels, _write(tmp_path, {"tools": {"spec": "te"}}))
    assert (from_file.tools.path, from_file.tools.spec) == ("tool-model", "te")
    assert load_config(TwoModels).tools.path == "tool-model"


def _write(tmp_path: Path, data) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_yaml_and_overrides_are_typed(tmp_path):
    path = _write(tmp_path, {"seed": 3, "optim": {"lr": "1e-4"}, "model": {"spec": "local"}})
    cfg = load_config(
        StageConfig, path, ["optim.warmup_steps=10", "model.checkpoint=null", "tags=[a,b]", "fp8=true"]
    )
    assert cfg.seed == 3
    assert cfg.optim.lr == pytest.approx(1e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.warmup_steps == 10
    assert cfg.model.spec == "local" and cfg.model.checkpoint is None
    assert cfg.tags == ["a", "b"] and cfg.fp8 is True
    assert isinstance(cfg.out, Path)


def test_override_beats_file_and_string_values_stay_strings(tmp_path):
    path = _write(tmp_path, {"model": {"path": "a"}})
    cfg = load_config(StageConfig, path, ["model.path=123", "optim.lr=2"])
    assert cfg.model.path == "123"  # a str field keeps the text as given
    assert cfg.optim.lr == 2.0


@pytest.mark.parametrize(
    ("overrides", "key", "words"),
    [
        (["optim.lrr=1"], "optim.lrr", "unknown key"),
        (["seed=three"], "seed", "integer"),
        (["model.spec=gpu"], "model.spec", "one of"),
        (["fp8=maybe"], "fp8", "true or false"),
        (["seed.x=1"], "seed", "integer"),
        (["tags.x=1"], "tags", "list"),
        (["optim.lr=fast"], "optim.lr", "number"),
        (["noequals"], "noequals", "key=value"),
    ],
)
def test_bad_override_names_the_key(overrides, key, words):
    with pytest.raises(ConfigError) as info:
        from_dict(StageConfig, apply_overrides({}, overrides))
    assert info.value.key == key
    assert words in str(info.value)


def test_bad_yaml_types_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="optim.betas\\[1\\]"):
        load_config(StageConfig, _write(tmp_path, {"optim": {"betas": [0.9, "x"]}}))
    with pytest.raises(ConfigError, match="'model'.*mapping"):
        load_config(StageConfig, _write(tmp_path, {"model": 5}))
    with pytest.raises(ConfigError, match="'seed'.*integer"):
        load_config(StageConfig, _write(tmp_path, {"seed": True}))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(StageConfig, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(StageConfig, bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(StageConfig, lst)


def test_section_of_a_multi_stage_file(tmp_path):
    path = _write(tmp_path, {"sft": {"seed": 7}, "grpo": {"seed": 9}})
    assert load_config(StageConfig, path, section="sft").seed == 7
    assert load_config(StageConfig, path, ["grpo.seed=11"], section="grpo").seed == 11
    assert load_config(StageConfig, path, ["seed=12"], section="grpo").seed == 12


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(StageConfig, None, ["optim.lr=0.5", "tags=[x]"])
    path = save_resolved(cfg, tmp_path / "run")
    assert path.name == "config.yaml"
    again = load_config(StageConfig, path)
    assert to_dict(again) == to_dict(cfg)


def test_required_key_missing():
    @dataclass
    class Needs:
        name: str

    with pytest.raises(ConfigError, match="'name'.*missing"):
        from_dict(Needs, {})
