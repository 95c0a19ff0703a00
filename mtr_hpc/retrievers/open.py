"""The search engine a `RetrievalEnvConfig` names, opened once per process and shared."""

from __future__ import annotations

import fcntl
import hashlib
import json
import sys
from functools import lru_cache
from pathlib import Path

from ..errors import ConfigError, DataError
from ..sim.config import RetrievalEnvConfig
from .base import SearchEngine


def corpus_path(name: str) -> Path:
    """`sample` (the corpus shipped in the package) or a path; a missing one is a `DataError`."""
    from ..data import sample_corpus_path

    path = Path(sample_corpus_path()) if name == "sample" else Path(name)
    if not path.exists():
        raise DataError(str(path), None, None, "corpus file or index directory does not exist")
    return path


def index_cache_dir(corpus: Path, skip_bad: bool) -> Path:
    """Where the index of a corpus file is cached: under the model cache (`$MTR_HPC_CACHE`, else
    `~/.cache/mtr-hpc`), keyed by the file's path, size and modification time."""
    from ..models.registry import cache_dir
    from .bm25_index import FORMAT, _corpus_identity

    ident = json.dumps([_corpus_identity(corpus), skip_bad, FORMAT], sort_keys=True)
    key = hashlib.blake2b(ident.encode(), digest_size=8).hexdigest()
    return cache_dir() / "indexes" / f"{corpus.name.split('.')[0]}-{key}"


def cached_index(corpus: Path, skip_bad: bool = False, threads: int = 0) -> SearchEngine:
    """The index of a corpus file, built into the cache the first time (one process builds while the
    others of a job wait on a file lock)."""
    from .bm25_index import BM25Index, IndexBuildConfig, build_index, is_index_dir

    out = index_cache_dir(corpus, skip_bad)
    if not is_index_dir(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out.with_name(out.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not is_index_dir(out):
                print(f"indexing {corpus} into {out} (once)", file=sys.stderr)
                build_index(
                    corpus, out, IndexBuildConfig(skip_bad=skip_bad), force=True, progress=sys.stderr.isatty()
                )
    return BM25Index(out, threads=threads)


def index_kind(path: Path) -> str:
    """`bm25` or `dense`, from an index directory's meta.json; empty for anything else."""
    try:
        fmt = json.loads((path / "meta.json").read_text()).get("format", "")
    except (OSError, ValueError):
        return ""
    return str(fmt).removeprefix("mtr-").split("/")[0]


@lru_cache(maxsize=4)
def _open(
    backend: str,
    corpus: str,
    url: str,
    timeout_s: float,
    retries: int,
    skip_bad: bool,
    threads: int,
    encoder: str,
    device: str,
) -> SearchEngine:
    if backend == "http":
        from ..llm.openai_http import RetryPolicy
        from .http import HttpRetriever

        return HttpRetriever(url, timeout_s, RetryPolicy(max_retries=retries))
    from .bm25_index import BM25Index

    path = corpus_path(corpus)
    kind = index_kind(path) if path.is_dir() else ""
    if kind and kind != backend:
        raise ConfigError("retrieval.backend", f"{path} is a {kind} index; set retrieval.backend={kind}")
    if backend == "dense":
        from .dense import DenseIndex

        if not kind:
            raise ConfigError(
                "retrieval.corpus",
                f"backend dense needs an index of `mtr index build --kind dense`, not {path}",
            )
        return DenseIndex(path, encoder, device)
    if path.is_dir():
        if not kind:
            raise DataError(
                path,
                None,
                None,
                "a directory that is not an index (no meta.json); build one with `mtr index build`",
            )
        return BM25Index(path, threads=threads)
    return cached_index(path, skip_bad, threads)


def open_retriever(cfg: RetrievalEnvConfig) -> SearchEngine:
    """The engine of `cfg`: one per process for the same settings (every benchmark's environment and
    every GRPO step share it)."""
    return _open(
        cfg.backend,
        cfg.corpus,
        cfg.url,
        cfg.timeout_s,
        cfg.max_retries,
        cfg.skip_bad,
        cfg.threads,
        cfg.encoder,
        cfg.device,
    )


def open_path(name: str, threads: int = 0, encoder: str = "", device: str = "cpu") -> SearchEngine:
    """The engine of an index directory of either kind, or of a corpus file (BM25, indexed into the
    cache once): what `mtr index search` and `mtr serve-retriever` open."""
    path = corpus_path(name)
    backend = (index_kind(path) or "bm25") if path.is_dir() else "bm25"
    cfg = RetrievalEnvConfig(backend=backend, corpus=name, threads=threads, encoder=encoder, device=device)
    return open_retriever(cfg)
