"""`SlotCache`: the decode batch that the transformers engine runs continuous batching on.

A module of its own because it subclasses transformers' `DynamicCache`: `kv_cache.slot_cache` imports
it only when an engine is built, so importing the package does not import transformers.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from .kv_cache import LayerKV, kv_shape


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
        new_k = [torch.zeros(shape, dtype=self.kv_dtype, device=self.kv_device) for _ in range(self.n_layers)]
        new_v = [torch.zeros(shape, dtype=self.kv_dtype, device=self.kv_device) for _ in range(self.n_layers)]
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
