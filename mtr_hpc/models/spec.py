"""Layer specs: `te` (Transformer Engine), `local` (Megatron-Core modules) and `cpu`.

`cpu` is Megatron's local spec with the core attention replaced by `SdpaAttention`, a small module on
torch `scaled_dot_product_attention`: Megatron's own `DotProductAttention` allocates its score buffer
on the current CUDA device and forks the CUDA RNG, so it cannot run without a GPU. `SdpaAttention`
is causal, honours GQA, takes an optional attention mask (Megatron convention: True = masked out) and
packed sequences (`PackedSeqParams` in THD format: block-diagonal causal attention per `cu_seqlens_q`).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from megatron.core import parallel_state
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.spec_utils import ModuleSpec

from ..errors import ConfigError, require


class SdpaAttention(MegatronModule):
    """Core attention on torch SDPA; drop-in for Megatron's `DotProductAttention` (same signature)."""

    def __init__(
        self,
        config,
        layer_number: int,
        attn_mask_type: AttnMaskType,
        attention_type: str,
        attention_dropout: float | None = None,
        softmax_scale: float | None = None,
        cp_comm_type: str | None = None,
        pg_collection=None,
        **_: object,
    ):
        super().__init__(config=config)
        if config.context_parallel_size != 1:
            raise ConfigError("context_parallel_size", "the cpu layer spec has no context parallelism")
        tp = pg_collection.tp.size() if pg_collection is not None and hasattr(pg_collection, "tp") else None
        if tp is None:
            tp = parallel_state.get_tensor_model_parallel_world_size()
        self.attn_mask_type = attn_mask_type
        self.num_heads = config.num_attention_heads // tp
        self.num_groups = (config.num_query_groups or config.num_attention_heads) // tp
        self.softmax_scale = softmax_scale or 1.0 / math.sqrt(config.kv_channels)
        self.dropout = config.attention_dropout if attention_dropout is None else attention_dropout

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        attn_mask_type: AttnMaskType | None = None,
        attention_bias: torch.Tensor | None = None,
        packed_seq_params=None,
        **_: object,
    ) -> torch.Tensor:
        if attention_bias is not None:
            raise ConfigError("attention_bias", "SdpaAttention takes no attention bias")
        mask_type = attn_mask_type or self.attn_mask_type
        if packed_seq_params is not None and getattr(packed_seq_params, "qkv_format", "thd") == "thd":
            # THD: [t, heads, dim] -> one "batch" of t tokens with a block-diagonal mask.
            cu = packed_seq_params.cu_seqlens_q
            mask = _block_causal_mask(cu, query.size(0), query.device)
            out = self._attend(query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1), mask, False)
            return out.reshape(query.size(0), -1)
        causal = mask_type == AttnMaskType.causal
        mask = None
        if attention_mask is not None:
            mask = ~attention_mask.bool()
            if causal:
                sq, sk = query.size(0), key.size(0)
                mask = mask & torch.ones(sq, sk, dtype=torch.bool, device=query.device).tril(sk - sq)
            causal = False
        return self._attend(query, key, value, mask, causal)

    def _attend(self, q, k, v, allowed: torch.Tensor | None, causal: bool) -> torch.Tensor:
        # Megatron hands over [s, b, heads, dim]; SDPA wants [b, heads, s, dim].
        sq, b = q.size(0), q.size(1)
        q, k, v = (x.permute(1, 2, 0, 3) for x in (q, k, v))
        if self.num_heads != self.num_groups:
            rep = self.num_heads // self.num_groups
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=allowed,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal,
            scale=self.softmax_scale,
        )
        return out.permute(2, 0, 1, 3).reshape(sq, b, -1)


def _block_causal_mask(cu_seqlens: torch.Tensor, total: int, device) -> torch.Tensor:
    """[t, t] boolean mask, True where token i may attend to token j (same sequence, j <= i)."""
    pos = torch.arange(total, device=device)
    seg = torch.bucketize(pos, cu_seqlens.to(device)[1:], right=True)
    return (seg[:, None] == seg[None, :]) & (pos[None, :] <= pos[:, None])


def layer_spec(kind: str) -> ModuleSpec:
    """The transformer layer spec for `kind` in cpu | local | te."""
    from megatron.core.models.gpt import gpt_layer_specs

    if kind == "te":
        require("transformer_engine", "the 'te' layer spec", "use layer_spec=local or cpu")
        return gpt_layer_specs.get_gpt_layer_with_transformer_engine_spec()
    if kind not in ("local", "cpu"):
        raise ConfigError("model.layer_spec", f"'{kind}' is not one of cpu, local, te")
    spec = gpt_layer_specs.get_gpt_layer_local_spec(normalization="RMSNorm")
    if kind == "cpu":
        spec = copy.deepcopy(spec)
        spec.submodules.self_attention.submodules.core_attention = SdpaAttention
    return spec
