"""Build a Megatron-Core `GPTModel` from an `Arch` (read from a HF config) and a `ModelConfig`.

The model is plain Megatron-Core; it knows nothing of DDP or optimizers. `device="cpu"` builds the
weights on the CPU and keeps them there: the rotary embedding would otherwise move its frequencies to
the current CUDA device on first use (the `CpuRotaryEmbedding` subclass skips that), and with tied
embeddings under pipeline parallelism Megatron copies the embedding matrix to the last stage with a
CUDA all-reduce at construction, which `_cpu_tied_embedding_sync` does on the CPU instead.

Pipeline parallelism: this rank builds only its stage (`pre_process` on the first stage, `post_process`
on the last), with Megatron's even split of the layers (`Layout.stage_layers` names the same split).
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
import torch.nn.functional as F
from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding
from megatron.core.models.common.language_module.language_module import LanguageModule
from megatron.core.models.gpt.gpt_model import GPTModel
from megatron.core.transformer.transformer_config import TransformerConfig

from ..errors import ConfigError
from ..precision import DTYPE_NAMES
from ..precision import torch_dtype as precision_torch_dtype
from .config import Arch, ModelConfig, padded_vocab_size
from .spec import layer_spec


def torch_dtype(name: str) -> torch.dtype:
    if name not in DTYPE_NAMES:
        # `auto` is resolved by the stage (`precision.resolve_dtype`) before a model is built.
        raise ConfigError("model.dtype", f"'{name}' must be resolved to one of fp32, bf16, fp16 first")
    return precision_torch_dtype(name)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def transformer_config(
    arch: Arch, cfg: ModelConfig, init_weights: bool = True, device: str | None = None
) -> TransformerConfig:
    """The Megatron `TransformerConfig` for `arch` under `cfg` (parallel sizes, dtype, fusions).

    `init_weights=False` skips random initialization, for models whose weights are loaded next.
    """
    arch.check_tp(cfg.tp)
    arch.check_pp(cfg.pp)
    on_cpu = (device or default_device()) == "cpu"
    dtype = torch_dtype(cfg.dtype)
    kwargs = dict(
        num_layers=arch.num_layers,
        hidden_size=arch.hidden_size,
        ffn_hidden_size=arch.ffn_hidden_size,
        num_attention_heads=arch.num_heads,
        num_query_groups=arch.num_kv_heads,
        kv_channels=arch.head_dim,
        normalization="RMSNorm",
        layernorm_epsilon=arch.norm_eps,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=arch.qkv_bias,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        tensor_model_parallel_size=cfg.tp,
        pipeline_model_parallel_size=cfg.pp,
        params_dtype=dtype,
        # Activations sent between pipeline stages; Megatron requires it whenever pp > 1, fp32 included.
        pipeline_dtype=dtype,
        bf16=cfg.dtype == "bf16",
        fp16=cfg.dtype == "fp16",
        use_cpu_initialization=on_cpu,
        perform_initialization=init_weights,
        # Off everywhere: the fused softmax of the `local` spec needs `scaled_masked_softmax_cuda`, which
        # the megatron-core wheel does not ship, and its causal variant ignores the attention mask, so
        # sequences packed into one row would attend to each other.
        masked_softmax_fusion=False,
        bias_dropout_fusion=not on_cpu,
        bias_activation_fusion=False,
        apply_rope_fusion=False,
        gradient_accumulation_fusion=False,
        persist_layer_norm=False,
    )
    if cfg.fp8:
        kwargs["fp8"] = cfg.fp8
    kwargs.update(_whole_layer_graph_scope())
    return TransformerConfig(**kwargs)


def _whole_layer_graph_scope() -> dict:
    """Megatron's default CUDA-graph coverage, spelled the way this release accepts without warning.

    Both 0.16 (`cuda_graph_scope`) and 0.19 (`cuda_graph_modules`) default to "full", then warn that
    "full" is deprecated in favour of the empty list, which means the same: the whole layer.
    """
    import dataclasses

    names = {f.name for f in dataclasses.fields(TransformerConfig)}
    for key in ("cuda_graph_modules", "cuda_graph_scope"):
        if key in names:
            return {key: []}
    return {}


class CpuRotaryEmbedding(RotaryEmbedding):
    """`RotaryEmbedding` whose frequencies stay on the device they were created on."""

    def get_emb(self, max_seq_len: int, offset: int = 0) -> torch.Tensor:
        freqs = self.get_freqs_non_repeated(max_seq_len, offset)
        if self.rotary_interleaved:
            emb = torch.stack((freqs.view(-1, 1), freqs.view(-1, 1)), dim=-1).view(freqs.shape[0], -1)
        else:
            emb = torch.cat((freqs, freqs), dim=-1)
        return emb[:, None, None, :]


def build_gpt(
    arch: Arch,
    cfg: ModelConfig,
    pre_process: bool | None = None,
    post_process: bool | None = None,
    init_weights: bool = True,
    device: str | None = None,
) -> GPTModel:
    """This rank's `GPTModel` (its pipeline stage); `init_parallel` must have run with the same tp/pp.

    `pre_process` / `post_process` default to whether this rank is on the first / last stage.
    """
    from megatron.core import parallel_state as ps

    device = device or default_device()
    if pre_process is None:
        pre_process = ps.is_pipeline_first_stage(ignore_virtual=True)
    if post_process is None:
        post_process = ps.is_pipeline_last_stage(ignore_virtual=True)
    config = transformer_config(arch, cfg, init_weights, device)
    sync = _cpu_tied_embedding_sync() if device == "cpu" else contextlib.nullcontext()
    with sync:
        model = GPTModel(
            config=config,
            transformer_layer_spec=layer_spec(cfg.layer_spec),
            vocab_size=padded_vocab_size(arch.vocab_size, cfg.make_vocab_size_divisible_by, cfg.tp),
            max_sequence_length=max(cfg.seq_length, arch.max_position_embeddings),
            pre_process=pre_process,
            post_process=post_process,
            parallel_output=True,
            share_embeddings_and_output_weights=arch.tied_embeddings,
            position_embedding_type="rope",
            rotary_base=int(arch.rope_theta),
        )
    if device == "cpu":
        if model._is_in_embd_group():
            dist.all_reduce(model.shared_embedding_or_output_weight().data, group=model.embd_group)
        if isinstance(getattr(model, "rotary_pos_emb", None), RotaryEmbedding):
            model.rotary_pos_emb.__class__ = CpuRotaryEmbedding
    else:
        model.cuda(torch.cuda.current_device())
    return model


@contextlib.contextmanager
def _cpu_tied_embedding_sync():
    """Skip Megatron's CUDA all-reduce of tied embeddings while a model is built on the CPU (the
    caller does the same all-reduce on the CPU afterwards)."""
    original = LanguageModule._is_in_embd_group
    LanguageModule._is_in_embd_group = lambda self: False
    try:
        yield
    finally:
        LanguageModule._is_in_embd_group = original


def gather_vocab(logits: torch.Tensor, group=None) -> torch.Tensor:
    """Concatenate vocab-parallel logits [b, s, v/tp] of the TP group into [b, s, v]."""
    if group is None:
        from megatron.core import parallel_state as ps

        group = ps.get_tensor_model_parallel_group()
    size = dist.get_world_size(group)
    if size == 1:
        return logits
    parts = [torch.empty_like(logits) for _ in range(size)]
    dist.all_gather(parts, logits.contiguous(), group=group)
    return torch.cat(parts, dim=-1)


def forward_logits(model: GPTModel, input_ids: torch.Tensor, vocab_size: int | None = None) -> torch.Tensor:
    """Full-vocab logits [b, s, vocab] of a causal forward pass (padding columns dropped)."""
    b, s = input_ids.shape
    device = next(model.parameters()).device
    input_ids = input_ids.to(device)
    position_ids = torch.arange(s, device=device).unsqueeze(0).expand(b, s)
    logits = gather_vocab(model(input_ids, position_ids, None))
    return logits[..., :vocab_size] if vocab_size is not None else logits
