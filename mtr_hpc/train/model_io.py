"""Where a training stage's Megatron model comes from and where it goes.

`build_policy` builds this rank's `GPTModel` (its tensor-parallel shard of its pipeline stage) from a
Hugging Face directory: architecture from its config.json, and with `init=pretrained` the weights of
exactly this rank's tensors, read from the safetensors files and converted. `hf_named_tensors` streams
the whole model back under Hugging Face names, gathered over the tensor- and pipeline-parallel groups;
`export_hf` writes it as a directory that `transformers.AutoModelForCausalLM.from_pretrained` loads
(safetensors, config.json, tokenizer), and the GRPO weight sync pushes the same stream into the engine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MtrError
from ..io import atomic_write_json
from ..models.config import Arch, ModelConfig, arch_from_hf
from ..models.convert import Layout, hf_to_megatron, iter_rule_names, megatron_to_hf_iter
from ..models.registry import resolve_model
from ..trace.chat_format import write_tools_format


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
        pp=model_cfg.pp,
    )
    return PolicySource(hf_dir, hf_config, arch, layout)


def build_policy(model_cfg: ModelConfig, src: PolicySource, init: str, device: str | None = None):
    """This rank's model; `init` is pretrained (weights from `src.hf_dir`) or random."""
    from megatron.core import parallel_state as ps

    from ..models.checkpoint import load_into_model
    from ..models.gpt import build_gpt
    from ..models.verify import load_hf_state_dict

    model = build_gpt(src.arch, model_cfg, init_weights=init != "pretrained", device=device)
    stage = ps.get_pipeline_model_parallel_rank()
    check_stage_layers(model, src.layout, stage)
    if init == "pretrained":
        names = {h for _, _, hf in iter_rule_names(src.layout, stage) for h in hf}
        hf_state = load_hf_state_dict(src.hf_dir, names)
        state = hf_to_megatron(hf_state, src.layout, ps.get_tensor_model_parallel_rank(), stage)
        dtype = next(model.parameters()).dtype
        load_into_model(model, {k: v.to(dtype) for k, v in state.items()}, source=src.hf_dir)
    return model


def check_stage_layers(model, layout: Layout, stage: int) -> None:
    """The conversion's idea of the stage's layers must be the model's (Megatron's own split)."""
    layers = list(model.decoder.layers)
    expected = layout.stage_layers(stage)
    got = range(layers[0].layer_number - 1, layers[-1].layer_number) if layers else range(0)
    if got != expected:
        raise MtrError(
            f"pipeline stage {stage} holds layers {got.start}..{got.stop - 1} but the conversion expects "
            f"{expected.start}..{expected.stop - 1}; uneven pipeline layouts are not supported"
        )


def hf_named_tensors(model, src: PolicySource):
    """(HF name, full tensor) for every weight, gathered over the TP and PP groups (all ranks call)."""
    from megatron.core import parallel_state as ps

    tp_group = ps.get_tensor_model_parallel_group() if src.layout.tp > 1 else None
    pp_group = ps.get_pipeline_model_parallel_group() if src.layout.pp > 1 else None
    return megatron_to_hf_iter(model, src.layout, tp_group=tp_group, pp_group=pp_group)


def export_hf(
    model, src: PolicySource, tokenizer, out_dir: str | Path, tools_format: str = "json"
) -> Path | None:
    """Write a HF directory from this model, in the dtype it trains in, with the chat format its prompts
    use (`trace.chat_format`); every rank takes part in the gather, global rank 0 alone keeps the
    tensors and writes."""
    import torch.distributed as dist
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    rank0 = (dist.get_rank() if dist.is_initialized() else 0) == 0
    state = {}
    for name, t in hf_named_tensors(model, src):
        if rank0:
            state[name] = t.detach().contiguous().cpu()
    if not rank0:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".model.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(out_dir / "model.safetensors")
    config = dict(src.hf_config)
    config.pop("quantization_config", None)
    config["torch_dtype"] = str(state["model.embed_tokens.weight"].dtype).removeprefix("torch.")
    atomic_write_json(out_dir / "config.json", config)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out_dir))
    write_tools_format(out_dir, tools_format)
    return out_dir
