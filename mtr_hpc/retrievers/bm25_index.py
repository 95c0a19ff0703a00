"""The on-disk BM25 index: built from a corpus file by streaming, searched memory-mapped.

Engine: bm25s (BM25 as a precomputed sparse matrix, saved as `.npy` files and memory-mapped; scored
with numba when it is installed). It was chosen over tantivy and Pyserini, measured in
`tools/bench_retrieval.py` and argued in the README: with the project's tokens (`sim.text.tokens`) and
Okapi's k1 = 1.5, b = 0.75 it ranks as rank_bm25, the engine the demo's numbers were measured with
(one departure: a word in over half of a shard's passages weighs 0 here, 0.25 x the mean idf there,
which matters in corpora of a few passages only), while tantivy's fixed Lucene scoring (k1 = 1.2, another idf) agreed on the top 3 for 80 % of the
shipped corpus's queries. Pyserini needs a JVM; a user with its published wiki-18 index reaches it
through a Search-R1 retrieval server (`retrieval.backend: http`).

Layout of an index directory: `meta.json` (format, corpus, parameters, counts) and one folder per shard
(`shard-000/`: `bm25/` the bm25s matrices and vocabulary, plus the shard's `DocStore`). A shard holds
`shard_docs` passages (a million by default, about 3 GB of build memory); each shard scores with
its own term statistics, as Elasticsearch's default search does, and queries merge the shards' top k
by score. A build writes into `<out>.partial` and renames it when done: an interrupted build leaves
no half index, and rerunning the same command resumes after the last finished shard.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..data.corpus import iter_passages
from ..errors import ConfigError, DataError, MtrError
from ..sim.retrieval import Passage
from ..sim.text import tokens
from .base import Hit, SearchEngine, page_of
from .docstore import DocStore, DocWriter, find_title

FORMAT = "mtr-bm25/1"
TOKENIZER = "mtr-tokens/1"  # `sim.text.tokens`: lowercase alphanumeric words without stopwords


@dataclass
class IndexBuildConfig:
    k1: float = 1.5
    b: float = 0.75
    shard_docs: int = 1_000_000
    skip_bad: bool = False

    def __post_init__(self) -> None:
        if self.shard_docs < 1:
            raise ConfigError("shard_docs", f"must be at least 1, got {self.shard_docs}")
        if self.k1 <= 0 or not (0.0 <= self.b <= 1.0):
            raise ConfigError("k1", f"need k1 > 0 and 0 <= b <= 1, got k1={self.k1}, b={self.b}")


class IndexExistsError(MtrError):
    pass


def _bm25s():
    import bm25s

    return bm25s


def _backend(n_docs: int) -> str:
    """numba, when installed, for a large index: its first search compiles for a few seconds, which
    only pays off past some hundred thousand passages."""
    if n_docs < 200_000:
        return "numpy"
    try:
        import numba  # noqa: F401
    except ImportError:
        return "numpy"
    return "numba"


class _TokenLists(Sequence):
    """The token ids of a shard's documents, one list per document, from one flat int32 array (a
    list of Python lists would take several times the memory)."""

    def __init__(self, flat: array, starts: array):
        self.flat, self.starts = flat, starts

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, i):
        return self.flat[self.starts[i] : self.starts[i + 1]].tolist()

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


@dataclass
class _Tokenized:  # what bm25s's `index` takes as "an object with ids and vocab"
    ids: _TokenLists
    vocab: dict[str, int]


def is_index_dir(path: str | Path) -> bool:
    return (Path(path) / "meta.json").is_file()


def _corpus_identity(corpus: Path) -> dict[str, Any]:
    st = corpus.stat()
    return {"path": str(corpus.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def build_index(
    corpus: str | Path,
    out: str | Path,
    cfg: IndexBuildConfig | None = None,
    *,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Build the index of `corpus` into the directory `out`; returns its `meta.json`.

    An existing index at `out` is an `IndexExistsError` unless `force`. A bad record raises a
    `DataError` naming its line (the partial build stays, so a fixed file cannot resume it: the
    corpus identity changed) unless `cfg.skip_bad`.
    """
    cfg = cfg or IndexBuildConfig()
    corpus, out, work = build_paths(corpus, out, force)
    plan = {"corpus": _corpus_identity(corpus), "build": asdict(cfg), "tokenizer": TOKENIZER}
    shards = _resume(work, plan)
    if shards and log:
        log(f"resuming after {len(shards)} finished shard(s), {sum(s['docs'] for s in shards):,} passages")
    t0 = time.perf_counter()
    skipped: list[DataError] = []
    done = sum(s["records"] for s in shards)
    bar = _bar(corpus, progress)
    try:
        stream = iter_passages(corpus, skip_bad=cfg.skip_bad, skipped=skipped, progress=bar.set_pos)
        records = 0
        shard = None
        for passage in stream:
            records += 1
            if records <= done:
                continue
            if shard is None:
                shard = _ShardBuilder(work / f"shard-{len(shards):03d}", cfg)
            shard.add(passage.id, passage.title, passage.text)
            if shard.n_docs >= cfg.shard_docs:
                shards.append(shard.finish(records - done))
                done, shard = records, None
                _save_plan(work, plan, shards)
        if shard is not None:
            shards.append(shard.finish(records - done))
            shard = None
            _save_plan(work, plan, shards)
    finally:
        bar.close()
        if shard is not None:  # stopped mid-shard: the shard is redone on resume
            shard.docs.close()
    if not shards:
        raise DataError(corpus, None, None, "the corpus holds no passages")
    meta = {
        "format": FORMAT,
        **plan,
        "shards": shards,
        "docs": sum(s["docs"] for s in shards),
        "skipped": len(skipped),
        "build_s": round(time.perf_counter() - t0, 1),
    }
    (work / "meta.json").write_text(json.dumps(meta, indent=1))
    # The old index goes aside, not away, until the new one is in place; plan.json stays until then,
    # so a build stopped here resumes with nothing left to do but the rename.
    old = out.with_name(out.name + ".old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(work, out)
    (out / "plan.json").unlink(missing_ok=True)
    shutil.rmtree(old, ignore_errors=True)
    return meta


def build_paths(corpus: str | Path, out: str | Path, force: bool) -> tuple[Path, Path, Path]:
    """(corpus, out, the partial build's directory) of a build, after checking the corpus exists and
    `out` may be written."""
    corpus, out = Path(corpus), Path(out)
    if not corpus.is_file():
        raise DataError(corpus, None, None, "corpus file does not exist")
    if out.exists() and not force:
        raise IndexExistsError(f"{out} already exists; pass --force to rebuild it")
    return corpus, out, out.with_name(out.name + ".partial")


def _resume(work: Path, plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The finished shards of an interrupted build of the same corpus and settings, else none (and
    the partial build is cleared)."""
    try:
        saved = json.loads((work / "plan.json").read_text())
    except (OSError, ValueError):
        saved = None
    if saved is not None and {k: saved.get(k) for k in plan} == plan:
        shards = saved.get("shards", [])
        keep = {f"shard-{i:03d}" for i in range(len(shards))}
        for child in work.iterdir():
            if child.name.startswith("shard-") and child.name not in keep:
                shutil.rmtree(child)
        return shards
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    _save_plan(work, plan, [])
    return []


def _save_plan(work: Path, plan: dict[str, Any], shards: list[dict[str, Any]]) -> None:
    tmp = work / "plan.json.tmp"
    tmp.write_text(json.dumps({**plan, "shards": shards}))
    os.replace(tmp, work / "plan.json")


class _Bar:
    def __init__(self, bar):
        self.bar = bar

    def set_pos(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _bar(corpus: Path, show: bool) -> _Bar:
    if not show:
        return _Bar(None)
    from tqdm import tqdm

    return _Bar(tqdm(total=corpus.stat().st_size, unit="B", unit_scale=True, desc=f"index {corpus.name}"))


class _ShardBuilder:
    def __init__(self, folder: Path, cfg: IndexBuildConfig):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        self.folder, self.cfg = folder, cfg
        self.docs = DocWriter(folder)
        self.vocab: dict[str, int] = {}
        self.flat, self.starts = array("i"), array("q", [0])

    @property
    def n_docs(self) -> int:
        return len(self.starts) - 1

    def add(self, pid: str, title: str, text: str) -> None:
        self.docs.add(pid, title, text)
        vocab = self.vocab
        # "_" stands in for a passage without tokens, as in rank_bm25's collections (`sim.retrieval`).
        self.flat.extend(
            [vocab.setdefault(t, len(vocab)) for t in tokens(f"{title} {text}")]
            or [vocab.setdefault("_", len(vocab))]
        )
        self.starts.append(len(self.flat))

    def finish(self, records: int) -> dict[str, Any]:
        bm25s = _bm25s()
        self.docs.close()
        model = bm25s.BM25(method="robertson", k1=self.cfg.k1, b=self.cfg.b)
        model.index(
            _Tokenized(_TokenLists(self.flat, self.starts), self.vocab),
            create_empty_token=False,
            show_progress=False,
        )
        model.save(self.folder / "bm25", show_progress=False)
        return {"name": self.folder.name, "docs": self.n_docs, "records": records, "vocab": len(self.vocab)}


def _thread_count(threads: int, backend: str) -> int:
    """Search threads: `threads`, or the job's cores (not the node's) for 0; never more than numba
    was started with (`NUMBA_NUM_THREADS`), which it refuses."""
    n = threads or len(os.sched_getaffinity(0))
    if backend == "numba":
        import numba

        n = min(n, int(numba.config.NUMBA_NUM_THREADS))
    return max(1, n)


class BM25Index(SearchEngine):
    """A built index, searched in batches (a `Retriever`). `threads` 0: every core."""

    def __init__(self, folder: str | Path, threads: int = 0):
        folder = Path(folder)
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, ValueError) as exc:
            raise DataError(folder, None, None, f"not an index directory (meta.json: {exc})") from None
        if meta.get("format") != FORMAT:
            raise DataError(
                folder, None, "format", f"expected {FORMAT!r}, got {meta.get('format')!r}; rebuild it"
            )
        if meta.get("tokenizer") != TOKENIZER:
            raise DataError(
                folder,
                None,
                "tokenizer",
                f"built with {meta.get('tokenizer')!r}, searched with {TOKENIZER!r}; rebuild it",
            )
        bm25s, backend = _bm25s(), _backend(int(meta.get("docs", 0)))
        self.folder, self.meta = folder, meta
        self.threads = _thread_count(threads, backend)
        self.path = meta["corpus"]["path"]
        self.n_skipped = int(meta.get("skipped", 0))
        self._shards = []
        for s in meta["shards"]:
            try:
                model = bm25s.BM25.load(folder / s["name"] / "bm25", mmap=True, backend=backend)
                self._shards.append((model, DocStore(folder / s["name"])))
            except (OSError, ValueError, KeyError) as exc:
                raise DataError(
                    folder / s["name"], None, None, f"a shard of the index is damaged ({exc})"
                ) from None
        self.n_docs = sum(len(store) for _, store in self._shards)
        self.max_k = self.n_docs

    def __len__(self) -> int:
        return self.n_docs

    def search_many(self, queries: list[str], top_k: int) -> list[list[Hit]]:
        """The `top_k` best passages of each query, best first, ties in corpus order. As from
        rank_bm25 (whose results the simulators' format was built on), `top_k` always come back:
        where fewer passages match, the first passages of the corpus fill the list with score 0."""
        if top_k <= 0 or not queries:
            return [[] for _ in queries]
        toks = [tokens(q) for q in queries]
        pooled: list[list[tuple[float, int, int]]] = [[] for _ in queries]
        threads = self.threads
        for si, (model, store) in enumerate(self._shards):
            # A few more than asked: bm25s picks among passages tied at the cut in no set order, and
            # ties go to the earlier passage here, as in rank_bm25.
            k = min(top_k + 8, len(store))
            ids = [[model.vocab_dict[t] for t in q if t in model.vocab_dict] for q in toks]
            live = [i for i, q in enumerate(ids) if q]
            if not live:
                continue
            docs, scores = model.retrieve(
                [ids[i] for i in live], k=k, show_progress=False, n_threads=threads if len(live) > 1 else 0
            )
            for row, qi in enumerate(live):
                d_row, s_row = docs[row], scores[row]
                if k < len(store) and s_row[-1] > 0 and s_row[-1] == s_row[min(top_k, k) - 1]:
                    d_row, s_row = self._widen(model, len(store), ids[qi], top_k, k)
                pooled[qi].extend(
                    (float(sc), si, int(d)) for d, sc in zip(d_row, s_row, strict=True) if sc > 0
                )
        out = []
        for hits in pooled:
            hits.sort(key=lambda h: (-h[0], h[1], h[2]))
            hits = hits[:top_k] + self._first(top_k - len(hits), {(si, d) for _, si, d in hits})
            out.append([Hit(self._shards[si][1].get_many([d])[0], sc) for sc, si, d in hits])
        return out

    @staticmethod
    def _widen(model, n_docs: int, qids: list[int], top_k: int, k: int):
        """One query's hits, asking for more until the passages tied with its `top_k`-th all come
        back (so the earliest of them can be kept)."""
        while True:
            k = min(k * 4, n_docs)
            docs, scores = model.retrieve([qids], k=k, show_progress=False, n_threads=0)
            if k == n_docs or scores[0][-1] != scores[0][top_k - 1]:
                return docs[0], scores[0]

    def _first(self, n: int, taken: set[tuple[int, int]]) -> list[tuple[float, int, int]]:
        """The first `n` passages of the corpus not in `taken`, with score 0."""
        out: list[tuple[float, int, int]] = []
        for si, (_, store) in enumerate(self._shards):
            for d in range(len(store)):
                if len(out) >= n:
                    return out
                if (si, d) not in taken:
                    out.append((0.0, si, d))
        return out

    def warm_up(self) -> None:
        """Compile numba's search, one query alone and a batch (two kernels), with words the index
        holds: the titles of its first passages."""
        store = self._shards[0][1]
        titles = [d["title"] for d in store.get_many(list(range(min(2, len(store)))))]
        self.search_many(titles[:1], 1)
        self.search_many(titles * 2, 1)

    def find_docs(self, title: str) -> list[dict[str, str]]:
        """Every passage titled `title` (case, punctuation and parentheticals aside), corpus order."""
        return find_title([store for _, store in self._shards], title) if title.strip() else []

    def find_page(self, title: str) -> Passage | None:
        """A page: its passages as one passage of their sentences."""
        return page_of(self.find_docs(title))
