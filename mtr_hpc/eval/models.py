"""Which weights a `ModelSpec` names, checked without loading them, and the HF directory to load.

Accepted: the embedded `smollm2-135m`, a Hugging Face directory (`config.json` + tokenizer files), an
SFT/GRPO run directory (its `hf/` export), or a Megatron checkpoint from `mtr convert` / training
(`mcore_config.json`), which is converted to a HF directory under the eval run directory on first use
and reused by a resumed run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ConfigError, MtrError
from .config import ModelSpec

TOKENIZER_MARKERS = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


@dataclass
class ModelSource:
    name: str
    kind: Literal["embedded", "hf", "run", "megatron"]
    path: str  # embedded name, HF dir, or Megatron checkpoint dir


def check_model(spec: ModelSpec, index: int) -> ModelSource:
    """The source `spec` names, or a `ConfigError` saying what is wrong with it (nothing is loaded)."""
    from ..models.registry import is_embedded

    key = f"models[{index}].path"
    if is_embedded(spec.path):
        return ModelSource(spec.name, "embedded", spec.path)
    path = Path(spec.path).expanduser()
    if not path.exists():
        raise ConfigError(key, f"model path {path} does not exist")
    if not path.is_dir():
        raise ConfigError(
            key, f"{path} is a file; expected a model directory, a run directory or a checkpoint"
        )
    if (path / "mcore_config.json").is_file():
        _check_megatron(path, key)
        return ModelSource(spec.name, "megatron", str(path))
    if (path / "config.json").is_file():
        _check_hf(path, key)
        return ModelSource(spec.name, "hf", str(path))
    if (path / "hf" / "config.json").is_file():
        _check_hf(path / "hf", key)
        return ModelSource(spec.name, "run", str(path / "hf"))
    raise ConfigError(
        key,
        f"{path} is not a model: expected a HF directory (config.json), a run directory with hf/, "
        "or a Megatron checkpoint (mcore_config.json)",
    )


def _check_hf(path: Path, key: str) -> None:
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(key, f"{path / 'config.json'} is not readable JSON ({exc})") from None
    if not isinstance(cfg, dict) or "model_type" not in cfg:
        raise ConfigError(key, f"{path / 'config.json'} is not a Hugging Face model config (no model_type)")
    if not any((path / m).is_file() for m in TOKENIZER_MARKERS):
        raise ConfigError(key, f"{path} has no tokenizer files ({', '.join(TOKENIZER_MARKERS)})")


def _check_megatron(path: Path, key: str) -> None:
    from ..models.checkpoint import load_meta, rank_path

    try:
        meta = load_meta(path)
    except MtrError as exc:
        raise ConfigError(key, str(exc)) from None
    missing = [r for r in range(meta.layout.tp) if not rank_path(path, r).is_file()]
    if missing:
        raise ConfigError(key, f"checkpoint {path} lacks the shard of TP rank {missing[0]}")
    if not any((path / "tokenizer" / m).is_file() for m in TOKENIZER_MARKERS):
        raise ConfigError(key, f"checkpoint {path} has no tokenizer/ directory to evaluate with")


def hf_dir_for(source: ModelSource, work_dir: Path) -> str:
    """A directory (or embedded name) `from_pretrained` loads; Megatron checkpoints are converted once."""
    if source.kind != "megatron":
        return source.path
    from ..models.pipeline import mcore_to_hf

    out = work_dir / "converted" / source.name
    done = out / ".complete"
    if not done.is_file():
        mcore_to_hf(source.path, out)
        done.write_text(f"converted from {source.path}\n", encoding="utf-8")
    return str(out)
