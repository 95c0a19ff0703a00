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
    """A `SlotCache` (see `_slot_cache_class`) for `slots` rows of a model with this config."""
    return _slot_cache_class()(config, slots, dtype, device)


@functools.cache
def _slot_cache_class() -> type:
    from transformers import DynamicCache

    class SlotCache(DynamicCache):
        """The decode batch of continuous batching: `slots` rows, each holding one sequence's KV
        left-aligned (row r's tokens at columns [0, length_r)), in buffers that grow (by half, copied)
        only when a row outgrows them.

        Rows join and leave the batch between decode steps without copying the batch: a new row is
        written into the first free slot, a finished row is replaced by the last active one (one row
        copied), so the active rows are always slots [0, n) and every step runs on views. Each step
        writes every row's new key and value at that row's own column (`step(positions)`); the model
        gets a 4D mask hiding each row's columns beyond its length. Transformers' batch-select of a
        `DynamicCache` copies the whole batch into fresh memory instead, which on CPU cost more than
        a decode step every time a row finished.
        """

        def __init__(self, config, slots: int, dtype: torch.dtype, device: torch.device):
            super().__init__(config=config)
            self.n_layers, self.kv_heads, self.head_dim = kv_shape(config)
            self.slots, self.kv_dtype, self.kv_device = slots, dtype, device
            self.capacity = 0
            self._k: list[torch.Tensor] = []
            self._v: list[torch.Tensor] = []
            self._rows = self._positions = None
            self.width = 0

        def reserve(self, length: int) -> None:
            """Room for `length` columns in every slot (grows by half at least, keeping the contents)."""
            if length <= self.capacity and self._k:
                return
            cap = -(-max(length, self.capacity * 3 // 2, 256) // 128) * 128
            shape = (self.slots, self.kv_heads, cap, self.head_dim)
            # Zeros, not empty: masked columns still enter the attention product, and NaN bits there
            # would survive the mask.
            new_k = [
                torch.zeros(shape, dtype=self.kv_dtype, device=self.kv_device) for _ in range(self.n_layers)
            ]
            new_v = [
                torch.zeros(shape, dtype=self.kv_dtype, device=self.kv_device) for _ in range(self.n_layers)
            ]
            for old, new in ((self._k, new_k), (self._v, new_v)):
                for a, b in zip(old, new, strict=False):
                    b[:, :, : self.capacity] = a
            self._k, self._v, self.capacity = new_k, new_v, cap

        def write(self, slot: int, kv: list[LayerKV]) -> None:
            length = kv[0][0].shape[1] if kv else 0
            self.reserve(length)
            for layer, (k, v) in enumerate(kv):
                self._k[layer][slot, :, :length] = k
                self._v[layer][slot, :, :length] = v

        def read(self, slot: int, length: int) -> list[LayerKV]:
            return [
                (k[slot, :, :length].clone(), v[slot, :, :length].clone())
                for k, v in zip(self._k, self._v, strict=True)
            ]

        def move(self, src: int, dst: int, length: int) -> None:
            for buf in (*self._k, *self._v):
                buf[dst, :, :length] = buf[src, :, :length]

        def step(self, positions: torch.Tensor) -> torch.Tensor:
            """Prepare a decode step of rows [0, len(positions)), row r writing column positions[r];
            returns the additive attention mask [n, 1, 1, width] for it."""
            self.width = int(positions.max()) + 1
            self.reserve(self.width)
            self._positions = positions
            self._rows = torch.arange(len(positions), device=positions.device)
            cols = torch.arange(self.width, device=positions.device)
            hidden = torch.finfo(self.kv_dtype).min
            mask = torch.where(cols[None, :] <= positions[:, None], 0.0, hidden).to(self.kv_dtype)
            return mask[:, None, None, :]

        def update(self, key_states, value_states, layer_idx, *args, **kwargs):
            n = key_states.shape[0]
            k, v = self._k[layer_idx], self._v[layer_idx]
            k[self._rows, :, self._positions] = key_states[:, :, 0]
            v[self._rows, :, self._positions] = value_states[:, :, 0]
            return k[:n, :, : self.width], v[:n, :, : self.width]

        def get_seq_length(self, layer_idx: int = 0) -> int:
            return max(self.width - 1, 0)

    return SlotCache
