"""Model configuration: what to build (`ModelConfig`) and the architecture read from a HF config (`Arch`).

`ModelConfig` is the user-facing section (HF model, layer spec, parallel sizes, dtype, FP8). `Arch` is the
architecture of a Llama-family or Qwen2 checkpoint, read from its Hugging Face `config.json`; it is all
the conversion and the GPT builder need, and it is stored beside converted checkpoints so a checkpoint
can be rebuilt without the original HF directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..precision import check_choice

LAYER_SPECS = ("sdpa", "local", "te")
SUPPORTED_MODEL_TYPES = ("llama", "qwen2")


@dataclass
class ModelConfig:
    """How to build the Megatron model. `hf` is a HF directory, hub name or `smollm2-135m`."""

    hf: str = "smollm2-135m"
    layer_spec: str = "sdpa"  # sdpa | local | te
    tp: int = 1
    pp: int = 1
    dtype: str = "fp32"  # auto | fp32 | bf16 | fp16 (auto: the machine's, see `mtr_hpc.precision`)
    fp8: str | None = None  # None | e4m3 | hybrid (te spec only)
    make_vocab_size_divisible_by: int = 128
    seq_length: int = 2048
    seed: int = 1234

    def __post_init__(self) -> None:
        if self.layer_spec not in LAYER_SPECS:
            renamed = (
                " (the `cpu` spec is now named `sdpa`: it runs on GPUs too)"
                if self.layer_spec == "cpu"
                else ""
            )
            raise ConfigError(
                "model.layer_spec", f"'{self.layer_spec}' is not one of {', '.join(LAYER_SPECS)}{renamed}"
            )
        check_choice("model.dtype", self.dtype)
        for key in ("tp", "pp", "make_vocab_size_divisible_by", "seq_length"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"model.{key}", f"must be >= 1, got {getattr(self, key)}")
        if self.fp8 is not None:
            if self.fp8 not in ("e4m3", "hybrid"):
                raise ConfigError("model.fp8", f"'{self.fp8}' is not one of e4m3, hybrid")
            if self.layer_spec != "te":
                raise ConfigError("model.fp8", "FP8 needs the Transformer Engine layer spec (layer_spec=te)")


@dataclass(frozen=True)
class Arch:
    """Decoder-only architecture shared by Llama and Qwen2 (RMSNorm, SwiGLU, RoPE, GQA)."""

    model_type: str
    num_layers: int
    hidden_size: int
    ffn_hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tied_embeddings: bool
    qkv_bias: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Arch:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = names - set(data)
        if missing:
            raise ConfigError("arch", f"missing fields {sorted(missing)}")
        return cls(**{k: data[k] for k in names})

    def check_tp(self, tp: int) -> None:
        """Tensor parallelism splits heads, query groups and the MLP evenly; say which one does not."""
        for what, n in (
            ("num_attention_heads", self.num_heads),
            ("num_key_value_heads", self.num_kv_heads),
            ("intermediate_size", self.ffn_hidden_size),
        ):
            if n % tp:
                raise ConfigError("tp", f"{what}={n} is not divisible by tensor parallel size {tp}")

    def check_pp(self, pp: int) -> None:
        """Pipeline stages hold equal numbers of layers; say so when they cannot."""
        if pp < 1 or self.num_layers % pp:
            raise ConfigError(
                "pp", f"num_hidden_layers={self.num_layers} is not divisible by pipeline parallel size {pp}"
            )


def _get(cfg: Any, name: str, default: Any = None) -> Any:
    return cfg.get(name, default) if isinstance(cfg, dict) else getattr(cfg, name, default)


def _rope_theta(cfg: Any) -> float:
    # transformers 5 moves rope settings into `rope_parameters`; 4.x keeps `rope_theta`/`rope_scaling`.
    params = _get(cfg, "rope_parameters") or {}
    scaling = _get(cfg, "rope_scaling") or {}
    rope_type = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if rope_type != "default":
        raise ConfigError("rope_scaling", f"RoPE type '{rope_type}' is not supported (only 'default')")
    theta = params.get("rope_theta", _get(cfg, "rope_theta", 10000.0))
    return float(theta)


def arch_from_hf(cfg: Any) -> Arch:
    """Read an `Arch` from a transformers `PretrainedConfig` or its `config.json` dict."""
    model_type = _get(cfg, "model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(
            "model_type", f"'{model_type}' is not supported ({', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    act = _get(cfg, "hidden_act", "silu")
    if act != "silu":
        raise ConfigError("hidden_act", f"'{act}' is not supported (SwiGLU needs 'silu')")
    if _get(cfg, "use_sliding_window", False):
        raise ConfigError("use_sliding_window", "sliding-window attention is not supported")
    if _get(cfg, "mlp_bias", False):
        raise ConfigError("mlp_bias", "MLP biases are not supported")
    hidden = int(_get(cfg, "hidden_size"))
    heads = int(_get(cfg, "num_attention_heads"))
    if model_type == "llama" and _get(cfg, "attention_bias", False):
        # Llama's attention_bias also puts a bias on o_proj, which Megatron ties to MLP biases.
        raise ConfigError("attention_bias", "Llama attention biases are not supported")
    return Arch(
        model_type=model_type,
        num_layers=int(_get(cfg, "num_hidden_layers")),
        hidden_size=hidden,
        ffn_hidden_size=int(_get(cfg, "intermediate_size")),
        num_heads=heads,
        num_kv_heads=int(_get(cfg, "num_key_value_heads") or heads),
        head_dim=int(_get(cfg, "head_dim") or hidden // heads),
        vocab_size=int(_get(cfg, "vocab_size")),
        norm_eps=float(_get(cfg, "rms_norm_eps", 1e-6)),
        rope_theta=_rope_theta(cfg),
        max_position_embeddings=int(_get(cfg, "max_position_embeddings", 2048)),
        tied_embeddings=bool(_get(cfg, "tie_word_embeddings", False)),
        qkv_bias=model_type == "qwen2",
    )


def padded_vocab_size(vocab_size: int, divisible_by: int, tp: int) -> int:
    """Megatron pads the vocabulary to a multiple of `divisible_by * tp` so every TP shard is equal."""
    multiple = divisible_by * tp
    return ((vocab_size + multiple - 1) // multiple) * multiple
