"""Hugging Face <-> Megatron-Core weight mapping, tensor-parallel aware.

One table (`RULES`) names every tensor on both sides and how it is split across TP ranks:

- `copy`:   replicated (norms).
- `column`: split along dim 0 (column-parallel outputs).
- `row`:    split along dim 1 (row-parallel inputs: `linear_proj`, `linear_fc2`).
- `vocab`:  padded with zero rows to the padded vocabulary, then split along dim 0.
- `qkv`:    q, k, v fused into `linear_qkv`, interleaved per query group (the group's query heads, then
            its key head, then its value head), groups split across ranks; biases alike.
- `glu`:    gate and up fused into `linear_fc1`; each is split across ranks separately and a rank holds
            [its gate rows; its up rows].

Layer norms live under different names in the Transformer Engine spec (fused into the next linear as
`layer_norm_weight`) and the local spec (`input_layernorm`, `pre_mlp_layernorm`); `te_name` covers that.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch

from ..errors import MtrError
from .config import Arch, padded_vocab_size


@dataclass(frozen=True)
class Rule:
    mcore: str  # "{i}" stands for the layer index
    hf: tuple[str, ...]
    kind: str  # copy | column | row | vocab | qkv | glu
    te_mcore: str | None = None
    optional: bool = False  # present only for some architectures (QKV bias, untied output layer)


_L = "decoder.layers.{i}."
_H = "model.layers.{i}."
RULES: tuple[Rule, ...] = (
    Rule("embedding.word_embeddings.weight", ("model.embed_tokens.weight",), "vocab"),
    Rule(
        _L + "input_layernorm.weight",
        (_H + "input_layernorm.weight",),
        "copy",
        te_mcore=_L + "self_attention.linear_qkv.layer_norm_weight",
    ),
    Rule(
        _L + "self_attention.linear_qkv.weight",
        tuple(_H + f"self_attn.{p}_proj.weight" for p in "qkv"),
        "qkv",
    ),
    Rule(
        _L + "self_attention.linear_qkv.bias",
        tuple(_H + f"self_attn.{p}_proj.bias" for p in "qkv"),
        "qkv",
        optional=True,
    ),
    Rule(_L + "self_attention.linear_proj.weight", (_H + "self_attn.o_proj.weight",), "row"),
    Rule(
        _L + "pre_mlp_layernorm.weight",
        (_H + "post_attention_layernorm.weight",),
        "copy",
        te_mcore=_L + "mlp.linear_fc1.layer_norm_weight",
    ),
    Rule(_L + "mlp.linear_fc1.weight", (_H + "mlp.gate_proj.weight", _H + "mlp.up_proj.weight"), "glu"),
    Rule(_L + "mlp.linear_fc2.weight", (_H + "mlp.down_proj.weight",), "row"),
    Rule("decoder.final_layernorm.weight", ("model.norm.weight",), "copy"),
    Rule("output_layer.weight", ("lm_head.weight",), "vocab", optional=True),
)


@dataclass(frozen=True)
class Layout:
    """What the conversion needs besides the tensors: architecture, TP size and naming."""

    arch: Arch
    tp: int = 1
    make_vocab_size_divisible_by: int = 128
    te_names: bool = False

    @property
    def padded_vocab(self) -> int:
        return padded_vocab_size(self.arch.vocab_size, self.make_vocab_size_divisible_by, self.tp)


def _applies(rule: Rule, arch: Arch) -> bool:
    if rule.mcore == "output_layer.weight":
        return not arch.tied_embeddings
    if rule.mcore.endswith("linear_qkv.bias"):
        return arch.qkv_bias
    return True


def iter_rule_names(layout: Layout) -> Iterator[tuple[Rule, str, tuple[str, ...]]]:
    """(rule, Megatron name, HF names) for every tensor of this architecture, in model order."""
    arch = layout.arch
    for rule in RULES:
        if not _applies(rule, arch):
            continue
        mcore = rule.te_mcore if layout.te_names and rule.te_mcore else rule.mcore
        layers = range(arch.num_layers) if "{i}" in mcore else (None,)
        for i in layers:
            fmt = {"i": i} if i is not None else {}
            yield rule, mcore.format(**fmt), tuple(h.format(**fmt) for h in rule.hf)


# ---- HF -> Megatron -------------------------------------------------------------------------------


def _qkv_full(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, arch: Arch) -> torch.Tensor:
    """[groups, (heads/groups + 2) * head_dim, ...] with each group's q heads, then k, then v."""
    g, d = arch.num_kv_heads, arch.head_dim
    rest = q.shape[1:]
    q = q.reshape(g, (arch.num_heads // g) * d, *rest)
    return torch.cat([q, k.reshape(g, d, *rest), v.reshape(g, d, *rest)], dim=1)


def _shard(rule: Rule, tensors: list[torch.Tensor], layout: Layout, rank: int) -> torch.Tensor:
    tp, kind = layout.tp, rule.kind
    if kind == "copy":
        return tensors[0]
    if kind == "column":
        return tensors[0].chunk(tp, dim=0)[rank]
    if kind == "row":
        return tensors[0].chunk(tp, dim=1)[rank].contiguous()
    if kind == "vocab":
        w = tensors[0]
        pad = layout.padded_vocab - w.shape[0]
        if pad < 0:
            raise MtrError(
                f"{rule.hf[0]} has {w.shape[0]} rows, more than the vocabulary {layout.padded_vocab}"
            )
        if pad:
            w = torch.cat([w, w.new_zeros(pad, *w.shape[1:])], dim=0)
        return w.chunk(tp, dim=0)[rank]
    if kind == "qkv":
        full = _qkv_full(*tensors, layout.arch)
        part = full.chunk(tp, dim=0)[rank]
        return part.reshape(-1, *part.shape[2:])
    if kind == "glu":
        gate, up = (t.chunk(tp, dim=0)[rank] for t in tensors)
        return torch.cat([gate, up], dim=0)
    raise AssertionError(kind)


def hf_to_megatron(
    hf_state: Mapping[str, torch.Tensor], layout: Layout, rank: int = 0
) -> dict[str, torch.Tensor]:
    """The Megatron state dict of TP rank `rank` from a full HF state dict.

    Output tensors may be views of the input ones (no copy where a slice will do).
    """
    layout.arch.check_tp(layout.tp)
    out: dict[str, torch.Tensor] = {}
    for rule, mcore, hf_names in iter_rule_names(layout):
        missing = [n for n in hf_names if n not in hf_state]
        if missing:
            raise MtrError(f"HF checkpoint has no tensor '{missing[0]}' (needed for {mcore})")
        out[mcore] = _shard(rule, [hf_state[n] for n in hf_names], layout, rank)
    return out


# ---- Megatron -> HF -------------------------------------------------------------------------------


def _unshard(rule: Rule, parts: list[torch.Tensor], layout: Layout) -> list[torch.Tensor]:
    arch, kind = layout.arch, rule.kind
    if kind == "copy":
        return [parts[0]]
    if kind == "column":
        return [torch.cat(parts, dim=0)]
    if kind == "row":
        return [torch.cat(parts, dim=1)]
    if kind == "vocab":
        full = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
        return [full[: arch.vocab_size]]
    if kind == "qkv":
        g, d = arch.num_kv_heads, arch.head_dim
        qd = (arch.num_heads // g) * d
        full = torch.cat(parts, dim=0)
        full = full.reshape(g, qd + 2 * d, *full.shape[1:])
        q, k, v = full.split([qd, d, d], dim=1)
        return [x.reshape(-1, *x.shape[2:]).contiguous() for x in (q, k, v)]
    if kind == "glu":
        halves = [p.chunk(2, dim=0) for p in parts]
        return [torch.cat([h[0] for h in halves], dim=0), torch.cat([h[1] for h in halves], dim=0)]
    raise AssertionError(kind)


def megatron_to_hf(shards: list[Mapping[str, torch.Tensor]], layout: Layout) -> dict[str, torch.Tensor]:
    """A full HF state dict from the Megatron state dicts of all TP ranks (rank order)."""
    if len(shards) != layout.tp:
        raise MtrError(f"expected {layout.tp} tensor-parallel shards, got {len(shards)}")
    out: dict[str, torch.Tensor] = {}
    for rule, mcore, hf_names in iter_rule_names(layout):
        for r, shard in enumerate(shards):
            if mcore not in shard:
                raise MtrError(f"Megatron checkpoint (TP rank {r}) has no tensor '{mcore}'")
        tensors = _unshard(rule, [s[mcore] for s in shards], layout)
        out.update(zip(hf_names, tensors, strict=True))
    return out


def megatron_to_hf_iter(model_or_state, layout: Layout, tp_group=None) -> Iterator[tuple[str, torch.Tensor]]:
    """Stream (HF name, full tensor) from this rank's model or state dict, gathering over `tp_group`.

    Every rank of the group must iterate in step (each tensor is an all-gather); all ranks receive the
    full tensors. With `tp_group=None` the state dict is taken as the only shard (TP=1).
    """
    import torch.distributed as dist

    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else model_or_state
    size = dist.get_world_size(tp_group) if tp_group is not None else 1
    if size != layout.tp:
        raise MtrError(f"TP group has {size} ranks but the layout says tp={layout.tp}")
    for rule, mcore, hf_names in iter_rule_names(layout):
        if mcore not in state:
            raise MtrError(f"Megatron state has no tensor '{mcore}'")
        local = state[mcore].detach()
        if size > 1:
            parts = [torch.empty_like(local) for _ in range(size)]
            dist.all_gather(parts, local.contiguous(), group=tp_group)
        else:
            parts = [local]
        yield from zip(hf_names, _unshard(rule, parts, layout), strict=True)


def rename_for_spec(state: Mapping[str, torch.Tensor], arch: Arch, te_names: bool) -> dict[str, torch.Tensor]:
    """The same state dict with layer-norm names of the TE spec (`te_names`) or of the local spec."""
    mapping: dict[str, str] = {}
    for rule in RULES:
        if rule.te_mcore is None:
            continue
        src, dst = (rule.mcore, rule.te_mcore) if te_names else (rule.te_mcore, rule.mcore)
        for i in range(arch.num_layers):
            mapping[src.format(i=i)] = dst.format(i=i)
    return {mapping.get(k, k): v for k, v in state.items()}
