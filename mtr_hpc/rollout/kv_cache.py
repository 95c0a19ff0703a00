"""Prefix caching for the transformers engine: a finished generation's KV cache, reused by the next call
whose prompt starts with the same tokens.

A multi-turn episode calls the engine once per turn with its whole context so far: the previous prompt,
what was sampled, and the observations appended. Without a cache every turn re-prefills that context.
`PrefixCache` keeps, for every generation that finished, the keys and values of its prompt and sampled
tokens (the last sampled token was never fed, so it is not among them), under those token ids; a new
prompt takes the longest stored prefix of itself and only its remaining tokens are prefilled. This is
what vLLM's automatic prefix caching does at block granularity; here the unit is a whole sequence, which
is all a turn-by-turn episode needs. Entries are consumed when they are extended and evicted least
recently used beyond a memory budget.

`batch_cache` lays rows out for batched decoding: row r's KV right-aligned in a [B, heads, T, dim]
block, the padding on the left hidden by the attention mask, positions counted over real tokens only,
so every row sees exactly the context it would see alone.
"""

from __future__ import annotations

import functools
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


def batch_cache(entries: list[Entry]) -> list[LayerKV]:
    """Per-layer (keys, values) [B, kv_heads, T, head_dim] with row r's KV right-aligned (the rest
    zeros, for the attention mask to hide)."""
    width = max(e.length for e in entries)
    out = []
    for layer in range(len(entries[0].kv)):
        ref = entries[0].kv[layer][0]
        keys = ref.new_zeros((len(entries), ref.shape[0], width, ref.shape[2]))
        values = torch.zeros_like(keys)
        for r, entry in enumerate(entries):
            k, v = entry.kv[layer]
            keys[r, :, width - entry.length :] = k
            values[r, :, width - entry.length :] = v
        out.append((keys, values))
    return out


def layer_tensors(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) [B, kv_heads, T, head_dim] of every layer of a transformers cache (the `layers`
    objects of transformers >= 4.56, or the key/value lists of older releases)."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))


def row_kv(cache, row: int, real: torch.Tensor) -> list[LayerKV]:
    """The KV of batch row `row` of a transformers cache at its real (unmasked) positions, copied out."""
    return [(k[row][:, real].clone(), v[row][:, real].clone()) for k, v in layer_tensors(cache)]


def growing(cache):
    """`cache` (a transformers `DynamicCache`) with its layers appending into buffers that grow by
    doubling, instead of concatenating the whole cache at every decoded token (which copies O(length)
    per token and was 30-40% of a decode step on CPU). Caches of other layouts are returned as they are."""
    try:
        from transformers.cache_utils import DynamicLayer
    except ImportError:  # transformers < 4.56 keeps key/value lists instead of layer objects
        return cache
    for layer in getattr(cache, "layers", []):
        if type(layer) is DynamicLayer:
            layer.__class__ = _growing_layer_class()
    return cache


@functools.cache
def _growing_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            length = self.get_seq_length()
            need = length + key_states.shape[-2]
            buf_k = getattr(self, "_buf_k", None)
            if buf_k is None or need > buf_k.shape[-2] or buf_k.shape[0] != key_states.shape[0]:
                cap = max(2 * need, 64)
                shape = (*key_states.shape[:2], cap, key_states.shape[-1])
                new_k, new_v = key_states.new_empty(shape), value_states.new_empty(shape)
                if length:
                    new_k[:, :, :length] = self.keys
                    new_v[:, :, :length] = self.values
                self._buf_k, self._buf_v = new_k, new_v
            self._buf_k[:, :, length:need] = key_states
            self._buf_v[:, :, length:need] = value_states
            self.keys, self.values = self._buf_k[:, :, :need], self._buf_v[:, :, :need]
            return self.keys, self.values

        def batch_select_indices(self, indices):
            if self.get_seq_length() > 0:
                length = self.get_seq_length()
                self._buf_k, self._buf_v = self._buf_k[indices], self._buf_v[indices]
                self.keys, self.values = self._buf_k[:, :, :length], self._buf_v[:, :, :length]

    return GrowingLayer
