"""Passages on disk: one shard's documents, read back by id, and its titles, looked up by key.

`docs.jsonl` holds one `{"id", "title", "text"}` line per document; `offsets.npy` (memory-mapped) holds
where each line starts, so a document is one seek and one read whatever the corpus size. Titles are
found through sorted 64-bit hashes of their lookup keys (`norm_key`, and `loose_key`, which drops
parentheticals), memory-mapped too: a page of wiki-18 is several 100-word passages under one title, and
a lookup returns all of them in corpus order. A hash collision is resolved by comparing the stored
title, so a lookup never returns another page.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from pathlib import Path

import numpy as np

from ..sim.text import loose_key, norm_key


def key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


class DocWriter:
    """Writes one shard's documents and title keys; `close()` writes the arrays."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._fh = open(folder / "docs.jsonl", "wb")
        self._offsets = array("q")
        self._norm, self._loose = array("Q"), array("Q")
        self._pos = 0

    def add(self, pid: str, title: str, text: str) -> int:
        doc = len(self._offsets)
        line = json.dumps({"id": pid, "title": title, "text": text}, ensure_ascii=False).encode() + b"\n"
        self._offsets.append(self._pos)
        self._fh.write(line)
        self._pos += len(line)
        self._norm.append(key_hash(norm_key(title)))
        self._loose.append(key_hash(loose_key(title)))
        return doc

    def close(self) -> None:
        self._fh.close()
        self._offsets.append(self._pos)
        np.save(self.folder / "offsets.npy", np.frombuffer(self._offsets, dtype=np.int64))
        for name, hashes in (("norm", self._norm), ("loose", self._loose)):
            keys = np.frombuffer(hashes, dtype=np.uint64)
            order = np.argsort(keys, kind="stable")
            np.save(self.folder / f"title_{name}_keys.npy", keys[order])
            np.save(self.folder / f"title_{name}_docs.npy", order.astype(np.int64))


class DocStore:
    """One shard's documents, read back by id; thread-safe (each read opens nothing shared)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.offsets = np.load(folder / "offsets.npy", mmap_mode="r")
        self._keys = {n: np.load(folder / f"title_{n}_keys.npy", mmap_mode="r") for n in ("norm", "loose")}
        self._docs = {n: np.load(folder / f"title_{n}_docs.npy", mmap_mode="r") for n in ("norm", "loose")}
        self._path = folder / "docs.jsonl"

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get_many(self, ids: list[int]) -> list[dict]:
        out = []
        with open(self._path, "rb") as fh:
            for i in ids:
                start, end = int(self.offsets[i]), int(self.offsets[i + 1])
                fh.seek(start)
                out.append(json.loads(fh.read(end - start)))
        return out

    def docs_with_key(self, name: str, key: str) -> list[dict]:
        """The documents whose title's `name` key (`norm` or `loose`) is `key`, in corpus order."""
        keys, h = self._keys[name], np.uint64(key_hash(key))
        lo, hi = int(np.searchsorted(keys, h, "left")), int(np.searchsorted(keys, h, "right"))
        if lo == hi:
            return []
        fn = norm_key if name == "norm" else loose_key
        ids = sorted(int(i) for i in self._docs[name][lo:hi])
        return [d for d in self.get_many(ids) if fn(d["title"]) == key]

    def find_title(self, title: str) -> list[dict]:
        return find_title([self], title)


def find_title(stores: list[DocStore], title: str) -> list[dict]:
    """The passages of the page titled `title` across `stores` (an index's shards, in order): an exact
    match (`norm_key`) anywhere before a loose one (`loose_key`), and of a loose key naming several
    pages ("X (film)", "X (novel)") the first; a page split across shards comes back whole."""
    for name, fn in (("norm", norm_key), ("loose", loose_key)):
        key = fn(title)
        if not key:
            continue
        docs = [d for store in stores for d in store.docs_with_key(name, key)]
        if docs:
            return [d for d in docs if d["title"] == docs[0]["title"]]
    return []
