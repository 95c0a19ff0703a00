"""Dense retrieval: passages embedded by an encoder (e5 by default), searched with faiss.

`retrieval.backend: dense` with `retrieval.corpus` naming a dense index directory, built by
`mtr index build --kind dense --encoder PATH`. As FlashRAG and Search-R1 build theirs: each passage is
embedded as `"passage: " + contents` (FlashRAG's `"Title"\\ntext`), each query as `"query: " + query`,
mean-pooled over the attention mask and L2-normalized, and searched by inner product in a flat faiss
index (exact). The encoder for wiki-18 is `intfloat/e5-base-v2` (a local copy on a cluster without
the hub; `retrieval.encoder` names it at search time when it moved). Passages live in a `DocStore`,
so `open_page` works as with BM25.

faiss is an optional dependency (`pip install faiss-cpu`, or `faiss-gpu` on a cluster: the index is
searched on the CPU either way; the encoder runs on `device`). A build is restartable, not resumable:
it writes `<out>.partial` and renames it when done. Not built: IVF / HNSW indexes, faiss on GPUs, and
loading Search-R1's published `e5_Flat.index` (serve that with its own server and `backend: http`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.corpus import iter_passages
from ..errors import ConfigError, DataError, require
from ..sim.retrieval import Passage
from .base import Hit, SearchEngine, page_of
from .bm25_index import _bar, _corpus_identity, build_paths
from .docstore import DocStore, DocWriter

FORMAT = "mtr-dense/1"


@dataclass
class DenseBuildConfig:
    encoder: str = ""  # a local Hugging Face directory (or a hub name where the hub is reachable)
    batch_size: int = 64
    max_length: int = 256
    device: str = "cpu"
    query_prefix: str = "query: "
    passage_prefix: str = "passage: "
    skip_bad: bool = False

    def __post_init__(self) -> None:
        if not self.encoder:
            raise ConfigError(
                "encoder", "a dense index needs an encoder (e.g. a local copy of intfloat/e5-base-v2)"
            )
        if self.batch_size < 1 or self.max_length < 8:
            raise ConfigError("batch_size", "batch_size must be >= 1 and max_length >= 8")


def _faiss():
    return require("faiss", "dense retrieval", "pip install faiss-cpu (or faiss-gpu)")


def contents(title: str, text: str) -> str:
    return f'"{title}"\n{text}'


class Encoder:
    """A transformers encoder: mean pooling over the attention mask, then L2 normalization (e5's)."""

    def __init__(self, path: str, device: str = "cpu", max_length: int = 256):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch, self.device, self.max_length = torch, device, max_length
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path).to(device).eval()
        except OSError as exc:
            raise ConfigError("retrieval.encoder", f"cannot load the encoder {path!r}: {exc}") from None
        self.dim = int(self.model.config.hidden_size)

    def encode(self, texts: list[str]) -> np.ndarray:
        torch = self.torch
        batch = self.tokenizer(
            texts, max_length=self.max_length, padding=True, truncation=True, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
        return pooled.cpu().numpy().astype(np.float32, copy=False)


def build_dense_index(
    corpus: str | Path,
    out: str | Path,
    cfg: DenseBuildConfig,
    *,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    faiss = _faiss()
    corpus, out, work = build_paths(corpus, out, force)
    if work.exists():
        shutil.rmtree(work)
    (work / "shard-000").mkdir(parents=True)
    t0 = time.perf_counter()
    encoder = Encoder(cfg.encoder, cfg.device, cfg.max_length)
    index = faiss.IndexFlatIP(encoder.dim)
    docs = DocWriter(work / "shard-000")
    skipped: list[DataError] = []
    bar = _bar(corpus, progress)
    batch: list[str] = []

    def flush() -> None:
        if batch:
            index.add(encoder.encode(batch))
            batch.clear()

    try:
        for p in iter_passages(corpus, skip_bad=cfg.skip_bad, skipped=skipped, progress=bar.set_pos):
            docs.add(p.id, p.title, p.text)
            batch.append(cfg.passage_prefix + contents(p.title, p.text))
            if len(batch) >= cfg.batch_size:
                flush()
        flush()
    finally:
        bar.close()
        docs.close()
    if index.ntotal == 0:
        raise DataError(corpus, None, None, "the corpus holds no passages")
    faiss.write_index(index, str(work / "faiss.index"))
    meta = {
        "format": FORMAT,
        "corpus": _corpus_identity(corpus),
        "build": asdict(cfg),
        "dim": encoder.dim,
        "docs": int(index.ntotal),
        "skipped": len(skipped),
        "build_s": round(time.perf_counter() - t0, 1),
    }
    (work / "meta.json").write_text(json.dumps(meta, indent=1))
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)
    if log:
        log(f"embedded {meta['docs']:,} passages ({meta['dim']} dimensions)")
    return meta


def is_dense_index(path: str | Path) -> bool:
    try:
        return json.loads((Path(path) / "meta.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError):
        return False


class DenseIndex(SearchEngine):
    """A built dense index; `encoder` overrides the path recorded at build time."""

    def __init__(self, folder: str | Path, encoder: str = "", device: str = "cpu"):
        faiss = _faiss()
        folder = Path(folder)
        if not is_dense_index(folder):
            raise DataError(folder, None, None, f"not a dense index directory (meta.json format {FORMAT!r})")
        self.folder, self.meta = folder, json.loads((folder / "meta.json").read_text())
        build = self.meta["build"]
        self.encoder = Encoder(encoder or build["encoder"], device, build["max_length"])
        if self.encoder.dim != self.meta["dim"]:
            raise ConfigError(
                "retrieval.encoder",
                f"the encoder gives {self.encoder.dim} dimensions, the index {self.meta['dim']}",
            )
        self.index = faiss.read_index(str(folder / "faiss.index"))
        self.store = DocStore(folder / "shard-000")
        self.query_prefix = build["query_prefix"]
        self.path = self.meta["corpus"]["path"]
        self.n_docs = self.max_k = int(self.meta["docs"])
        self.n_skipped = int(self.meta.get("skipped", 0))

    def __len__(self) -> int:
        return self.n_docs

    def search_many(self, queries: list[str], top_k: int) -> list[list[Hit]]:
        if top_k <= 0 or not queries:
            return [[] for _ in queries]
        emb = self.encoder.encode([self.query_prefix + q for q in queries])
        scores, ids = self.index.search(emb, min(top_k, self.n_docs))
        out = []
        for row_ids, row_scores in zip(ids, scores, strict=True):
            keep = [(int(i), float(s)) for i, s in zip(row_ids, row_scores, strict=True) if i >= 0]
            docs = self.store.get_many([i for i, _ in keep])
            out.append([Hit(d, s) for d, (_, s) in zip(docs, keep, strict=True)])
        return out

    def find_docs(self, title: str) -> list[dict[str, str]]:
        return self.store.find_title(title) if title.strip() else []

    def find_page(self, title: str) -> Passage | None:
        return page_of(self.find_docs(title))
