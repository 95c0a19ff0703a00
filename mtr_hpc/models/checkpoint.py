"""A simple on-disk Megatron checkpoint: one `torch.save`d state dict per TP rank plus a JSON config.

Layout of a checkpoint directory::

    mcore_config.json        format, Arch, tp, vocab padding, naming, dtype, the source HF config
    mp_rank_00/model.pt      state dict of TP rank 0 (Megatron names)
    tokenizer/               the source model's tokenizer files, when it had any

Every file is written atomically and `mcore_config.json` last, so a directory with that file is whole.
Distributed (sharded) checkpoints for training are a separate format.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import DataError, MtrError
from ..io import atomic_write, atomic_write_json, read_json
from ..trace.chat_format import CHAT_FORMAT_FILE
from .config import Arch
from .convert import Layout

FORMAT = "mtr-mcore-v1"
CONFIG_NAME = "mcore_config.json"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "generation_config.json",
    # How to prompt the model, like the chat template: carried through both conversions.
    CHAT_FORMAT_FILE,
)


@dataclass
class CheckpointMeta:
    layout: Layout
    dtype: str = "fp32"
    hf_config: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "arch": self.layout.arch.to_dict(),
            "tp": self.layout.tp,
            "make_vocab_size_divisible_by": self.layout.make_vocab_size_divisible_by,
            "te_names": self.layout.te_names,
            "dtype": self.dtype,
            "hf_config": self.hf_config,
            "source": self.source,
        }


def rank_path(ckpt_dir: str | Path, rank: int) -> Path:
    return Path(ckpt_dir) / f"mp_rank_{rank:02d}" / "model.pt"


def save_rank(ckpt_dir: str | Path, rank: int, state: Mapping[str, torch.Tensor]) -> None:
    with atomic_write(rank_path(ckpt_dir, rank), "wb") as fh:
        torch.save({k: compact(v) for k, v in state.items()}, fh)


def compact(t: torch.Tensor) -> torch.Tensor:
    """`t` alone in its own contiguous storage."""
    # torch.save writes a view's whole storage; a TP slice must not carry the full tensor with it.
    if t.is_contiguous() and t.untyped_storage().nbytes() == t.numel() * t.element_size():
        return t
    return t.clone(memory_format=torch.contiguous_format)


def save_meta(ckpt_dir: str | Path, meta: CheckpointMeta) -> None:
    atomic_write_json(Path(ckpt_dir) / CONFIG_NAME, meta.to_dict())


def copy_tokenizer(hf_dir: str | Path, dest: str | Path) -> None:
    src = Path(hf_dir)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            with atomic_write(Path(dest) / name, "wb") as fh, open(src / name, "rb") as inp:
                shutil.copyfileobj(inp, fh)


def load_meta(ckpt_dir: str | Path) -> CheckpointMeta:
    path = Path(ckpt_dir) / CONFIG_NAME
    if not path.is_file():
        raise MtrError(f"{ckpt_dir} is not a converted Megatron checkpoint (no {CONFIG_NAME})")
    data = read_json(path)
    if data.get("format") != FORMAT:
        raise DataError(path, None, "format", f"expected '{FORMAT}', got {data.get('format')!r}")
    try:
        layout = Layout(
            arch=Arch.from_dict(data["arch"]),
            tp=int(data["tp"]),
            make_vocab_size_divisible_by=int(data["make_vocab_size_divisible_by"]),
            te_names=bool(data.get("te_names", False)),
        )
    except (KeyError, TypeError, ValueError, MtrError) as exc:
        raise DataError(path, None, None, f"malformed checkpoint config ({exc})") from None
    return CheckpointMeta(
        layout, data.get("dtype", "fp32"), data.get("hf_config") or {}, data.get("source", "")
    )


def load_rank(ckpt_dir: str | Path, rank: int) -> dict[str, torch.Tensor]:
    path = rank_path(ckpt_dir, rank)
    if not path.is_file():
        raise MtrError(f"checkpoint shard {path} is missing")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise DataError(path, None, None, f"cannot load state dict ({exc})") from None


def load_into_model(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Copy `state` into `model`, failing with the tensor name and both shapes on any mismatch."""
    own = {k: v for k, v in model.state_dict().items() if not k.endswith("_extra_state")}
    for name, tensor in own.items():
        if name not in state:
            raise MtrError(f"{source} has no tensor '{name}' that the model needs")
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise MtrError(
                f"{source} tensor '{name}' has shape {tuple(state[name].shape)} but the model expects "
                f"{tuple(tensor.shape)}"
            )
    extra = sorted(set(state) - set(own))
    if extra:
        raise MtrError(f"{source} has tensor '{extra[0]}' that the model does not have")
    with torch.no_grad():
        model.load_state_dict({k: state[k] for k in own}, strict=False)
