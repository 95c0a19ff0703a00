"""Weight pushes into a vLLM model, one whole vLLM layer at a time.

A trainer names its tensors as Hugging Face does (`...q_proj.weight`); vLLM fuses some of them into one
layer (`qkv_proj` holds q, k and v; `gate_up_proj` holds gate and up: the model class's
`packed_modules_mapping`). vLLM's in-place reload (`reload_weights(weights_iterator=...)`, read in
0.32's `vllm/model_executor/model_loader/reload/layerwise.py`) rebuilds a layer from the tensors it
received and re-runs that layer's post-load processing (on CPU: the oneDNN packed copy of every linear
layer and of the output layer). A layer that received only some of its tensors is rebuilt at the end
of the reload with the rest taken from uninitialized memory (`finalize_layerwise_processing`, "Delayed
processing"), so a push must carry whole layers. `LayerPlan.stream` enforces that: it holds a layer's
tensors back until the layer is complete and passes only complete layers on; what is left incomplete
or unknown is reported after the push (`PushReport.raise_if_bad`) and never reaches vLLM.

Tied embeddings: in a model whose output layer shares the embedding (`tie_word_embeddings`, SmolLM2),
vLLM keeps ONE parameter for both, but two layers that each hold their own processed copy on CPU (the
embedding's and the output layer's `cpu_linear`). A push naming only `model.embed_tokens.weight` (what a
tied trainer has) refreshes the embedding and leaves the logits computed from the stale output copy, so
the stream names the tensor under both names. vLLM releases that skip `lm_head.` for tied models
(`AutoWeightsLoader(skip_prefixes=...)`, e.g. 0.10.2's `llama.py`) drop the second name harmlessly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import RunFailure

EMBED = "model.embed_tokens.weight"
OUTPUT = "lm_head.weight"


@dataclass
class PushReport:
    """What one push carried, and what it could not pass on."""

    tensors: int = 0
    bytes: int = 0
    unknown: list[str] = field(default_factory=list)
    incomplete: dict[str, list[str]] = field(default_factory=dict)  # layer -> the names it lacked

    def raise_if_bad(self) -> None:
        """`RunFailure` naming the tensors that were not loaded (the engine keeps its old ones there)."""
        problems = []
        if self.unknown:
            problems.append(f"names the engine's model does not have: {_few(self.unknown)}")
        for layer, missing in self.incomplete.items():
            problems.append(f"layer {layer} lacks {_few(missing)}")
        if problems:
            raise RunFailure(
                "update_weights: vLLM loads whole layers only, and this push was refused where it would "
                "have left a layer half-loaded or named an unknown tensor (those layers keep their "
                "previous weights; push every tensor of a layer together): " + "; ".join(problems)
            )


class LayerPlan:
    """The engine model's layers, each with the Hugging Face names that fill it."""

    def __init__(self, vllm_param_names: Iterable[str], packed: dict[str, list[str]], tied: bool):
        self.tied = tied
        self.layers: dict[str, set[str]] = {}
        self._layer_of: dict[str, str] = {}
        for name in vllm_param_names:
            module, _, param = name.rpartition(".")
            parent, _, leaf = module.rpartition(".")
            members = packed.get(leaf, [leaf])
            for member in members:
                hf = ".".join(p for p in (parent, member, param) if p)
                self.layers.setdefault(module, set()).add(hf)
                self._layer_of[hf] = module
        if tied and EMBED in self._layer_of:
            self.layers["lm_head"] = {OUTPUT}
            self._layer_of[OUTPUT] = "lm_head"

    @classmethod
    def of_model(cls, model: Any, tied: bool) -> LayerPlan:
        """The plan of a vLLM model module (run inside the worker, `LLM.apply_model`)."""
        return cls(
            (n for n, _ in model.named_parameters()), dict(getattr(model, "packed_modules_mapping", {})), tied
        )

    def check_names(self, names: Sequence[str]) -> None:
        """Refuse, before anything is loaded, a push whose names leave a layer half-filled."""
        report = PushReport()
        got: dict[str, set[str]] = {}
        for name in self._with_tied(names):
            layer = self._layer_of.get(name)
            if layer is None:
                report.unknown.append(name)
            else:
                got.setdefault(layer, set()).add(name)
        for layer, names_in in got.items():
            if names_in != self.layers[layer]:
                report.incomplete[layer] = sorted(self.layers[layer] - names_in)
        report.raise_if_bad()

    def _with_tied(self, names: Iterable[str]) -> list[str]:
        names = list(names)
        if self.tied and (EMBED in names or OUTPUT in names):
            names = [n for n in names if n not in (EMBED, OUTPUT)] + [EMBED, OUTPUT]
        return names

    def whole_layers(
        self, named_tensors: Iterable[tuple[str, Any]], report: PushReport
    ) -> Iterator[list[tuple[str, Any]]]:
        """The pairs of `named_tensors` grouped by layer, each layer passed on once it is complete.

        Never raises while vLLM consumes it (an exception inside vLLM's reload would leave its layers
        half-rebuilt): what it cannot pass on goes into `report`.
        """
        pending: dict[str, dict[str, Any]] = {}
        done: set[str] = set()
        for name, tensor in named_tensors:
            tensor = tensor.detach()
            names = [EMBED, OUTPUT] if self.tied and name in (EMBED, OUTPUT) else [name]
            for n in names:
                layer = self._layer_of.get(n)
                if layer is None:
                    report.unknown.append(n)
                    continue
                if n in done:  # the tied pair, named by both halves of the push
                    continue
                held = pending.setdefault(layer, {})
                held[n] = tensor
                if held.keys() == self.layers[layer]:
                    items = list(pending.pop(layer).items())
                    done.update(k for k, _ in items)
                    report.tensors += len(items)
                    report.bytes += sum(t.numel() * t.element_size() for _, t in items)
                    yield items
        for layer, held in pending.items():
            report.incomplete[layer] = sorted(self.layers[layer] - held.keys())


def buckets(layers: Iterable[list[tuple[str, Any]]], bucket_bytes: int) -> Iterator[list[tuple[str, Any]]]:
    """Whole layers gathered into lists of about `bucket_bytes` (a layer is never split)."""
    bucket: list[tuple[str, Any]] = []
    size = 0
    for layer in layers:
        bucket += layer
        size += sum(t.numel() * t.element_size() for _, t in layer)
        if size >= bucket_bytes:
            yield bucket
            bucket, size = [], 0
    if bucket:
        yield bucket


def _few(names: Iterable[str], n: int = 4) -> str:
    names = list(names)
    return ", ".join(names[:n]) + (f" (and {len(names) - n} more)" if len(names) > n else "")
