"""Where a training stage's Megatron model comes from and where it goes.

`build_policy` builds this rank's `GPTModel` from a Hugging Face directory (architecture from its
config.json; weights from its safetensors when `init=pretrained`, converted for this TP rank).
`export_hf` gathers the TP shards back into Hugging Face names and writes a directory that
`transformers.AutoModelForCausalLM.from_pretrained` loads: safetensors, config.json, tokenizer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..io import atomic_write_json
from ..models.config import Arch, ModelConfig, arch_from_hf
from ..models.convert import Layout, hf_to_megatron, megatron_to_hf_iter
from ..models.registry import resolve_model


@dataclass
class PolicySource:
    hf_dir: str
    hf_config: dict[str, Any]
    arch: Arch
    layout: Layout


def policy_source(model_cfg: ModelConfig) -> PolicySource:
    hf_dir = resolve_model(model_cfg.hf)
    hf_config = json.loads((Path(hf_dir) / "config.json").read_text(encoding="utf-8"))
    arch = arch_from_hf(hf_config)
    layout = Layout(
        arch=arch,
        tp=model_cfg.tp,
        make_vocab_size_divisible_by=model_cfg.make_vocab_size_divisible_by,
        te_names=model_cfg.layer_spec == "te",
    )
    return PolicySource(hf_dir, hf_config, arch, layout)


def build_policy(model_cfg: ModelConfig, src: PolicySource, init: str):
    """This rank's model; `init` is pretrained (weights from `src.hf_dir`) or random."""
    from megatron.core import parallel_state as ps

    from ..models.checkpoint import load_into_model
    from ..models.gpt import build_gpt
    from ..models.verify import load_hf_state_dict

    model = build_gpt(src.arch, model_cfg, init_weights=init != "pretrained")
    if init == "pretrained":
        hf_state = load_hf_state_dict(src.hf_dir)
        state = hf_to_megatron(hf_state, src.layout, rank=ps.get_tensor_model_parallel_rank())
        dtype = next(model.parameters()).dtype
        load_into_model(model, {k: v.to(dtype) for k, v in state.items()}, source=src.hf_dir)
    return model


def hf_named_tensors(model, src: PolicySource):
    """(HF name, full tensor) for every weight, gathered over the TP group (all TP ranks must call)."""
    from megatron.core import parallel_state as ps

    group = ps.get_tensor_model_parallel_group() if src.layout.tp > 1 else None
    return megatron_to_hf_iter(model, src.layout, tp_group=group)


def export_hf(model, src: PolicySource, tokenizer, out_dir: str | Path) -> Path | None:
    """Write a HF directory from this model; every TP rank takes part, global rank 0 writes."""
    import torch.distributed as dist
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    state = {
        name: t.detach().to(torch.float32).contiguous().cpu() for name, t in hf_named_tensors(model, src)
    }
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank != 0:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".model.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(out_dir / "model.safetensors")
    config = dict(src.hf_config)
    config.pop("quantization_config", None)
    config["torch_dtype"] = "float32"
    atomic_write_json(out_dir / "config.json", config)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out_dir))
    return out_dir
