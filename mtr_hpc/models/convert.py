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

Pipeline parallelism: stage `s` of `pp` holds layers [s·L/pp, (s+1)·L/pp) under LOCAL indices
(`decoder.layers.0` is the stage's first layer, as Megatron's `TransformerBlock` names them), the word
embeddings only on the first stage, the final norm and the output layer only on the last. With tied
embeddings and `pp > 1` the last stage keeps its own copy of the embedding matrix as
`output_layer.weight` (Megatron keeps the two in step through its embedding group); it is loaded from
`model.embed_tokens.weight` and never exported.
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


# The last stage's copy of tied embeddings (pp > 1 only): loaded from the embeddings, never exported.
_TIED_OUTPUT = Rule("output_layer.weight", ("model.embed_tokens.weight",), "vocab")


@dataclass(frozen=True)
class Layout:
    """What the conversion needs besides the tensors: architecture, TP and PP sizes, and naming."""

    arch: Arch
    tp: int = 1
    make_vocab_size_divisible_by: int = 128
    te_names: bool = False
    pp: int = 1

    @property
    def padded_vocab(self) -> int:
        return padded_vocab_size(self.arch.vocab_size, self.make_vocab_size_divisible_by, self.tp)

    def stage_layers(self, stage: int) -> range:
        """Global indices of the decoder layers that pipeline stage `stage` holds."""
        self.arch.check_pp(self.pp)
        if not 0 <= stage < self.pp:
            raise MtrError(f"pipeline stage {stage} is outside [0, {self.pp})")
        per = self.arch.num_layers // self.pp
        return range(stage * per, (stage + 1) * per)


def _applies(rule: Rule, arch: Arch) -> bool:
    if rule.mcore == "output_layer.weight":
        return not arch.tied_embeddings
    if rule.mcore.endswith("linear_qkv.bias"):
        return arch.qkv_bias
    return True


def _on_stage(rule: Rule, layout: Layout, stage: int) -> bool:
    if "{i}" in rule.mcore:
        return True
    if rule.mcore.startswith("embedding."):
        return stage == 0
    return stage == layout.pp - 1  # final norm, output layer


def iter_rule_names(
    layout: Layout, stage: int | None = None, exported: bool = False
) -> Iterator[tuple[Rule, str, tuple[str, ...]]]:
    """(rule, Megatron name, HF names) for every tensor, in model order.

    `stage=None`: the whole model under global layer indices (what a pp=1 model holds). `stage=s`:
    the tensors pipeline stage `s` holds, Megatron names with the stage's local layer indices and HF
    names with global ones. `exported=True` leaves out the last stage's copy of tied embeddings.
    """
    arch = layout.arch
    rules = [r for r in RULES if _applies(r, arch)]
    if stage is not None and layout.pp > 1 and arch.tied_embeddings and not exported:
        rules.append(_TIED_OUTPUT)
    for rule in rules:
        if stage is not None and not _on_stage(rule, layout, stage):
            continue
        mcore = rule.te_mcore if layout.te_names and rule.te_mcore else rule.mcore
        if "{i}" not in mcore:
            yield rule, mcore, rule.hf
            continue
        layers = range(arch.num_layers) if stage is None else layout.stage_layers(stage)
        for local, i in enumerate(layers):
            j = i if stage is None else local
            yield rule, mcore.format(i=j), tuple(h.format(i=i) for h in rule.hf)


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
    hf_state: Mapping[str, torch.Tensor], layout: Layout, rank: int = 0, stage: int | None = None
) -> dict[str, torch.Tensor]:
    """The Megatron state dict of TP rank `rank` (of pipeline stage `stage`) from a full HF state dict.

    `stage=None` gives the whole model (pp=1). Output tensors may be views of the input ones (no copy
    where a slice will do).
    """
    layout.arch.check_tp(layout.tp)
    if stage is None and layout.pp > 1:
        raise MtrError(f"the layout has pp={layout.pp}: name the pipeline stage to convert")
    out: dict[str, torch.Tensor] = {}
    for rule, mcore, hf_names in iter_rule_names(layout, stage):
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
    """A full HF state dict from the Megatron state dicts of all TP ranks (rank order; pp=1)."""
    if layout.pp != 1:
        raise MtrError(
            "megatron_to_hf takes a whole model (pp=1); stream a pipeline with megatron_to_hf_iter"
        )
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


def megatron_to_hf_iter(
    model_or_state, layout: Layout, tp_group=None, pp_group=None
) -> Iterator[tuple[str, torch.Tensor]]:
    """Stream (HF name, full tensor) of the whole model from this rank's model or state dict.

    Each tensor is all-gathered over `tp_group` inside the pipeline stage that holds it, then broadcast
    from that stage over `pp_group`, so every rank of both groups receives every full tensor, one at a
    time: no rank ever holds a second copy of its stage or of the model. All ranks of both groups must
    iterate in step. With a group of `None` that dimension is taken to have one rank.
    """
    import torch.distributed as dist

    from .parallel import collective_device

    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else model_or_state
    tp = dist.get_world_size(tp_group) if tp_group is not None else 1
    pp = dist.get_world_size(pp_group) if pp_group is not None else 1
    if (tp, pp) != (layout.tp, layout.pp):
        raise MtrError(
            f"groups of tp={tp}, pp={pp} ranks, but the layout says tp={layout.tp}, pp={layout.pp}"
        )
    if pp == 1:
        yield from _stage_tensors(state, layout, None, tp_group)
        return
    me = dist.get_rank(pp_group)
    # The device the group's backend serves (NCCL: this rank's GPU), not that of some state entry:
    # Transformer Engine keeps its `_extra_state` on the CPU.
    device = collective_device(pp_group)
    for stage in range(pp):
        src = dist.get_global_rank(pp_group, stage)
        mine = _stage_tensors(state, layout, stage, tp_group) if stage == me else None
        while True:
            item = next(mine, None) if mine is not None else None
            # Name, shape and dtype first, so that receivers can allocate; None ends the stage.
            box = [(item[0], tuple(item[1].shape), item[1].dtype) if item is not None else None]
            dist.broadcast_object_list(box, src=src, group=pp_group, device=device)
            if box[0] is None:
                break
            name, shape, dtype = box[0]
            if item is not None:
                t = item[1].to(device).contiguous()
            else:
                t = torch.empty(shape, dtype=dtype, device=device)
            dist.broadcast(t, src=src, group=pp_group)
            yield name, t


def _stage_tensors(state, layout: Layout, stage: int | None, tp_group) -> Iterator[tuple[str, torch.Tensor]]:
    """(HF name, full tensor) of one pipeline stage's tensors, gathered over `tp_group`."""
    import torch.distributed as dist

    for rule, mcore, hf_names in iter_rule_names(layout, stage, exported=True):
        if mcore not in state:
            raise MtrError(f"Megatron state has no tensor '{mcore}'")
        local = state[mcore].detach()
        if layout.tp > 1:
            parts = [torch.empty_like(local) for _ in range(layout.tp)]
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
