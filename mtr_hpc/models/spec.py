"""Layer specs: `te` (Transformer Engine), `local` (Megatron-Core modules) and `sdpa`.

`sdpa` is Megatron's local spec with the core attention replaced by `SdpaAttention`, a small module on
torch `scaled_dot_product_attention`. It runs on the CPU and on GPUs: Megatron's own
`DotProductAttention` allocates its score buffer on the current CUDA device and forks the CUDA RNG, so it
cannot run without a GPU, and on a GPU it materializes the full score matrix, where SDPA dispatches to
torch's fused kernels (flash or memory-efficient attention). `SdpaAttention` is causal, honours GQA,
takes an optional attention mask (Megatron convention: True = masked out) and packed sequences
(`PackedSeqParams` in THD format): each sequence of the pack attends causally to itself alone, one
SDPA call per sequence, so no [t, t] mask is built and the causal fast path of the fused kernels applies.
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
            raise ConfigError("context_parallel_size", "the sdpa layer spec has no context parallelism")
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
            return self._attend_packed(query, key, value, packed_seq_params.cu_seqlens_q)
        causal = mask_type == AttnMaskType.causal
        mask = None
        if attention_mask is not None:
            mask = ~attention_mask.bool()
            if causal:
                sq, sk = query.size(0), key.size(0)
                mask = mask & torch.ones(sq, sk, dtype=torch.bool, device=query.device).tril(sk - sq)
            causal = False
        return self._attend(query, key, value, mask, causal)

    def _attend_packed(self, q, k, v, cu_seqlens: torch.Tensor) -> torch.Tensor:
        """THD [t, heads, dim]: causal attention within each sequence of the pack; [t, heads * dim]."""
        bounds = cu_seqlens.tolist()
        outs = []
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            if b > a:
                outs.append(self._attend(q[a:b, None], k[a:b, None], v[a:b, None], None, True)[:, 0])
        tail = q.size(0) - bounds[-1]  # padding after the last sequence attends to itself alone
        if tail > 0:
            outs.append(self._attend(q[-tail:, None], k[-tail:, None], v[-tail:, None], None, True)[:, 0])
        return torch.cat(outs, dim=0)

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


def layer_spec(kind: str) -> ModuleSpec:
    """The transformer layer spec for `kind` in sdpa | local | te."""
    from megatron.core.models.gpt import gpt_layer_specs

    if kind == "te":
        require("transformer_engine", "the 'te' layer spec", "use layer_spec=sdpa (torch SDPA) or local")
        return gpt_layer_specs.get_gpt_layer_with_transformer_engine_spec()
    if kind not in ("local", "sdpa"):
        raise ConfigError("model.layer_spec", f"'{kind}' is not one of sdpa, local, te")
    spec = gpt_layer_specs.get_gpt_layer_local_spec(normalization="RMSNorm")
    if kind == "sdpa":
        spec = copy.deepcopy(spec)
        spec.submodules.self_attention.submodules.core_attention = SdpaAttention
    return spec
