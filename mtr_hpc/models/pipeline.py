"""Directory-level conversions behind `mtr convert`: HF dir -> Megatron checkpoint and back, with checks.

Both directions keep the source dtype. The HF output is one `model.safetensors` plus `config.json` and
the tokenizer files carried in the checkpoint; a tied output layer is not written (HF re-ties it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import MtrError
from ..io import atomic_write, atomic_write_json
from .checkpoint import (
    CheckpointMeta,
    compact,
    copy_tokenizer,
    load_meta,
    load_rank,
    save_meta,
    save_rank,
)
from .config import Arch, arch_from_hf
from .convert import Layout, hf_to_megatron, megatron_to_hf
from .verify import (
    compare_logits,
    hf_config_dict,
    hf_logits,
    load_hf_model,
    load_hf_state_dict,
    megatron_logits,
    prompt_ids,
    states_equal,
)

_DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def hf_to_mcore(
    hf_dir: str | Path, out: str | Path, tp: int = 1, spec: str = "sdpa", divisible_by: int = 128
) -> CheckpointMeta:
    """Convert a HF directory into a checkpoint of `tp` ranks named for layer spec `spec`."""
    hf_cfg = hf_config_dict(hf_dir)
    arch = arch_from_hf(hf_cfg)
    layout = Layout(arch, tp=tp, make_vocab_size_divisible_by=divisible_by, te_names=spec == "te")
    state = load_hf_state_dict(hf_dir)
    for r in range(tp):
        save_rank(out, r, hf_to_megatron(state, layout, r))
    copy_tokenizer(hf_dir, Path(out) / "tokenizer")
    dtype = _DTYPE_NAMES.get(state["model.embed_tokens.weight"].dtype, "fp32")
    meta = CheckpointMeta(layout, dtype=dtype, hf_config=hf_cfg, source=str(hf_dir))
    save_meta(out, meta)
    return meta


def hf_config_from_arch(arch: Arch) -> dict[str, Any]:
    """A minimal HF config for `arch`, used when neither the checkpoint nor the user supplies one."""
    return {
        "architectures": ["Qwen2ForCausalLM" if arch.model_type == "qwen2" else "LlamaForCausalLM"],
        "model_type": arch.model_type,
        "hidden_size": arch.hidden_size,
        "intermediate_size": arch.ffn_hidden_size,
        "num_hidden_layers": arch.num_layers,
        "num_attention_heads": arch.num_heads,
        "num_key_value_heads": arch.num_kv_heads,
        "head_dim": arch.head_dim,
        "vocab_size": arch.vocab_size,
        "rms_norm_eps": arch.norm_eps,
        "rope_theta": arch.rope_theta,
        "max_position_embeddings": arch.max_position_embeddings,
        "tie_word_embeddings": arch.tied_embeddings,
        "hidden_act": "silu",
    }


def load_merged_hf_state(ckpt: str | Path) -> tuple[CheckpointMeta, list[dict], dict[str, torch.Tensor]]:
    meta = load_meta(ckpt)
    shards = [load_rank(ckpt, r) for r in range(meta.layout.tp)]
    return meta, shards, megatron_to_hf(shards, meta.layout)


def mcore_to_hf(ckpt: str | Path, out: str | Path, hf_config: dict[str, Any] | None = None) -> CheckpointMeta:
    """Convert a checkpoint back into a HF directory; `hf_config` overrides the stored HF config."""
    from safetensors.torch import save

    meta, _, state = load_merged_hf_state(ckpt)
    cfg = dict(hf_config or meta.hf_config or hf_config_from_arch(meta.layout.arch))
    given = arch_from_hf(cfg)
    if given != meta.layout.arch:
        diff = {
            k: (v, meta.layout.arch.to_dict()[k])
            for k, v in given.to_dict().items()
            if v != meta.layout.arch.to_dict()[k]
        }
        raise MtrError(f"HF config does not match the checkpoint (config vs checkpoint): {diff}")
    with atomic_write(Path(out) / "model.safetensors", "wb") as fh:
        fh.write(save({k: compact(v) for k, v in state.items()}, metadata={"format": "pt"}))
    copy_tokenizer(Path(ckpt) / "tokenizer", out)
    atomic_write_json(Path(out) / "config.json", cfg)
    return meta


def verify_hf_to_mcore(hf_dir: str | Path, ckpt: str | Path) -> dict[str, Any]:
    """Logits of the source HF model vs the converted checkpoint, and HF -> Megatron -> HF exactness."""
    meta, _, back = load_merged_hf_state(ckpt)
    source = load_hf_state_dict(hf_dir)
    expected = {k: source[k] for k in back}
    report = _logit_check(hf_dir, meta, back)
    report["roundtrip_exact"] = states_equal(expected, back)
    return report


def verify_mcore_to_hf(ckpt: str | Path, hf_out: str | Path) -> dict[str, Any]:
    """Logits of the written HF model vs the checkpoint, and Megatron -> HF -> Megatron exactness."""
    meta, shards, back = load_merged_hf_state(ckpt)
    written = load_hf_state_dict(hf_out)
    report = _logit_check(hf_out, meta, back)
    report["roundtrip_exact"] = all(
        states_equal(shards[r], hf_to_megatron(written, meta.layout, r)) for r in range(meta.layout.tp)
    )
    return report


def _logit_check(
    hf_dir: str | Path, meta: CheckpointMeta, merged_hf: dict[str, torch.Tensor]
) -> dict[str, Any]:
    arch = meta.layout.arch
    ids = prompt_ids(hf_dir, arch.vocab_size)
    reference = hf_logits(load_hf_model(hf_dir, torch.float32), ids)
    tp1 = Layout(arch, 1, meta.layout.make_vocab_size_divisible_by, te_names=False)
    mc = megatron_logits(arch, tp1, hf_to_megatron(merged_hf, tp1, 0), ids)
    return {**compare_logits(reference, mc), "tp": meta.layout.tp, "dtype": meta.dtype}


def format_report(report: dict[str, Any]) -> str:
    return json.dumps(report, sort_keys=True)
