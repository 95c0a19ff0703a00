"""Tiny randomly initialized Llama / Qwen2 models for tests and tiny configs (a few layers, CPU-fast)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def tiny_hf_config(
    model_type: str = "qwen2",
    tied: bool = True,
    vocab_size: int = 200,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
) -> dict[str, Any]:
    """A HF `config.json` dict; `vocab_size` is deliberately not a multiple of 128 (exercises padding)."""
    arch = "Qwen2ForCausalLM" if model_type == "qwen2" else "LlamaForCausalLM"
    return {
        "architectures": [arch],
        "model_type": model_type,
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_kv_heads,
        "head_dim": hidden_size // num_heads,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0 if model_type == "llama" else 1000000.0,
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
    }


def tiny_hf_model(seed: int = 0, **config: Any):
    """A randomly initialized transformers causal LM (fp32, eval) for `tiny_hf_config(**config)`.

    QKV biases and norm weights are randomized too (HF initializes them to 0 and 1), so a conversion
    that drops or misplaces them changes the logits.
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.AutoConfig.for_model(**tiny_hf_config(**config))
    model = transformers.AutoModelForCausalLM.from_config(cfg).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if "norm" in name else 0.0))
    return model


def save_tiny_hf_model(path: str | Path, seed: int = 0, **config: Any) -> Path:
    """Write a tiny model as a HF directory (config + safetensors) and return its path."""
    path = Path(path)
    tiny_hf_model(seed, **config).save_pretrained(path, safe_serialization=True)
    return path
