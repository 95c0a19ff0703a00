"""Prefix caching for the transformers engine: a finished generation's KV cache, reused by the next call
whose prompt starts with the same tokens.

A multi-turn episode calls the engine once per turn with its whole context so far: the previous prompt,
what was sampled, and the observations appended. Without a cache every turn re-prefills that context.
`PrefixCache` keeps, for every generation that finished (under `generate_continuous`, every one whose
request goes on), the keys and values of its prompt and sampled
tokens (the last sampled token was never fed, so it is not among them), under those token ids; a new
prompt takes the longest stored prefix of itself and only its remaining tokens are prefilled. This is
what vLLM's automatic prefix caching does at block granularity; here the unit is a whole sequence, which
is all a turn-by-turn episode needs. Entries are consumed when they are extended and evicted least
recently used beyond a memory budget.

`SlotCache` is the decode batch the engine runs continuous batching on: rows (requests) join and
leave between steps without copying the batch.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

# Per layer: (keys, values), each [kv_heads, length, head_dim].
LayerKV = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Entry:
    kv: list[LayerKV]

    @property
    def length(self) -> int:
        return self.kv[0][0].shape[1] if self.kv else 0

    @property
    def nbytes(self) -> int:
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.kv)


class PrefixCache:
    """KV of finished sequences by their token ids; longest-prefix lookup; LRU within `max_bytes`."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, ...], Entry] = OrderedDict()
        self._lengths: dict[int, int] = {}  # stored key length -> how many keys have it
        self.bytes = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, ids: list[int]) -> tuple[tuple[int, ...] | None, Entry | None]:
        """(key, entry) of the longest stored prefix of `ids`, or (None, None)."""
        for length in sorted(self._lengths, reverse=True):
            if length > len(ids):
                continue
            key = tuple(ids[:length])
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return key, entry
        return None, None

    def store(self, key: tuple[int, ...], kv: list[LayerKV]) -> None:
        if self.max_bytes <= 0 or not key:
            return
        self.drop(key)
        entry = Entry(kv)
        if entry.nbytes > self.max_bytes:
            return
        self._entries[key] = entry
        self._lengths[len(key)] = self._lengths.get(len(key), 0) + 1
        self.bytes += entry.nbytes
        while self.bytes > self.max_bytes:
            self.drop(next(iter(self._entries)))

    def drop(self, key: tuple[int, ...]) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self.bytes -= entry.nbytes
        self._lengths[len(key)] -= 1
        if not self._lengths[len(key)]:
            del self._lengths[len(key)]

    def clear(self) -> None:
        self._entries.clear()
        self._lengths.clear()
        self.bytes = 0


def layer_tensors(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) [B, kv_heads, T, head_dim] of every layer of a transformers `DynamicCache`."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def kv_shape(config) -> tuple[int, int, int]:
    """(layers, kv heads, head dim) of a transformers decoder config."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return cfg.num_hidden_layers, kv_heads, head_dim


def slot_cache(config, slots: int, dtype: torch.dtype, device: torch.device):
    """A `SlotCache` (`rollout.slot_cache`) for `slots` rows of a model with this config."""
    from .slot_cache import SlotCache

    return SlotCache(config, slots, dtype, device)
