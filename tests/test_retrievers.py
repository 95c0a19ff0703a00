"""The search engines of the `retrieval` environment: corpus formats, the on-disk index (build, resume,
search, bad input), the HTTP client against real servers on 127.0.0.1, a round's searches in one batch,
and the CLI."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from _corpus import index_of, write_corpus

from mtr_hpc.data.corpus import iter_passages, load_corpus, split_contents
from mtr_hpc.errors import ConfigError, DataError
from mtr_hpc.llm.openai_http import RetryPolicy
from mtr_hpc.retrievers.bm25_index import BM25Index, IndexBuildConfig, IndexExistsError, build_index
from mtr_hpc.retrievers.http import HttpRetriever, RetrieverError
from mtr_hpc.retrievers.server import RetrieverServeConfig, RetrieverServer
from mtr_hpc.sim.config import RetrievalEnvConfig

ROOT = Path(__file__).resolve().parents[1]

# A page of several passages under one title, as wiki-18 splits its articles into 100-word passages.
RECORDS = [
    ("Ada Lovelace", "Ada Lovelace was an English mathematician. She wrote on the Analytical Engine."),
    ("Ada Lovelace", "Her father was the poet Lord Byron."),
    ("Charles Babbage", "Charles Babbage designed the Analytical Engine."),
    ("Lord Byron", "Lord Byron was a poet of the Romantic movement."),
    ("Paris (city)", "Paris is the capital of France."),
    ("Kiss Me Kate (film)", "Kiss Me Kate is a 1953 musical film directed by George Sidney."),
    ("Kiss Me Kate (musical)", "Kiss Me, Kate is a musical by Cole Porter."),
]


def test_both_corpus_formats_stream_alike_and_flashrag_titles_lose_their_quotes(tmp_path):
    plain = write_corpus(tmp_path / "plain.jsonl", RECORDS)
    flash = write_corpus(tmp_path / "flash.jsonl", RECORDS, flashrag=True)
    packed = tmp_path / "flash.jsonl.gz"
    packed.write_bytes(gzip.compress(flash.read_bytes()))
    want = [(t, x) for t, x in RECORDS]
    for path in (plain, flash, packed):
        assert [(p.title, p.text) for p in iter_passages(path)] == want
    assert [p.id for p in iter_passages(flash)] == [str(i) for i in range(len(RECORDS))]
    assert split_contents('"Title"\nline one\nline two') == ("Title", "line one\nline two")
    assert split_contents("no title line") == ("", "no title line")


def test_a_truncated_or_corrupt_line_is_a_data_error_naming_it(tmp_path):
    path = write_corpus(tmp_path / "c.jsonl", RECORDS)
    lines = path.read_text().splitlines()
    lines[3] = lines[3][:25]  # cut mid-record, as a copy that stopped early leaves it
    lines[5] = json.dumps({"id": "5", "body": "no contents"})
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"c\.jsonl, line 4: not valid JSON"):
        list(iter_passages(path))
    skipped: list[DataError] = []
    kept = list(iter_passages(path, skip_bad=True, skipped=skipped))
    assert len(kept) == len(RECORDS) - 2
    assert [e.where for e in skipped] == ["line 4", "line 6"] and skipped[1].field == "title"
    # A gzip stream cut short: the lines before the cut are read, then an error naming where.
    packed = tmp_path / "cut.jsonl.gz"
    rng = random.Random(0)
    text = "\n".join(
        json.dumps({"title": f"T{i}", "text": " ".join(str(rng.random()) for _ in range(50))})
        for i in range(500)
    )
    full = gzip.compress((text + "\n").encode())
    packed.write_bytes(full[: len(full) // 2])
    read: list = []
    with pytest.raises(DataError, match=r"cut\.jsonl\.gz, line \d+: the gzip stream is cut short"):
        for p in iter_passages(packed):
            read.append(p)
    assert read, "the records before the cut were read"


def test_index_search_pages_and_titles(tmp_path):
    index = index_of(RECORDS, tmp_path)
    assert len(index) == len(RECORDS) and index.meta["docs"] == len(RECORDS)
    hits = index.search_many(["Analytical Engine designed", "zzzz unknown words"], 2)
    assert [h.doc["title"] for h in hits[0]] == ["Charles Babbage", "Ada Lovelace"]
    assert hits[0][0].score > hits[0][1].score > 0
    # No word of it is in the corpus: as rank_bm25 did, the first passages fill the results, at score 0
    # (every search returns top_k, as the simulators' do).
    assert [(h.doc["title"], h.score) for h in hits[1]] == [("Ada Lovelace", 0.0), ("Ada Lovelace", 0.0)]
    fewer = index.search_many(["Babbage"], 3)[0]
    assert [h.doc["title"] for h in fewer] == ["Charles Babbage", "Ada Lovelace", "Ada Lovelace"]
    assert fewer[0].score > 0 and fewer[1].score == 0
    # A page is every passage of its title, in corpus order.
    page = index.find_page("ada lovelace")
    assert page.title == "Ada Lovelace" and page.sentences[-1] == "Her father was the poet Lord Byron."
    assert index.find_page("Paris").title == "Paris (city)"  # a parenthetical aside
    assert index.find_page("Kiss Me Kate").title == "Kiss Me Kate (film)"  # one page, not two
    assert len(index.find_docs("Kiss Me Kate")) == 1
    assert index.find_page("Atlantis") is None and index.find_page("  ") is None
    # Excluding a page's title drops all its passages, widening the search as needed.
    assert "Ada Lovelace" not in [p.title for p in index.rank("Ada Lovelace poet", 2, {"Ada Lovelace"})]


def test_shards_search_as_one_index(tmp_path):
    """Each shard scores with its own term statistics (as Elasticsearch's default search does): on
    shards of thousands of passages the best passage is nearly always the one index's."""
    from mtr_hpc.data import load_sample, sample_corpus_path
    from mtr_hpc.sim.text import search_query

    build_index(sample_corpus_path(), tmp_path / "one", progress=False)
    build_index(sample_corpus_path(), tmp_path / "three", IndexBuildConfig(shard_docs=3000), progress=False)
    one, three = BM25Index(tmp_path / "one"), BM25Index(tmp_path / "three")
    assert [s["docs"] for s in three.meta["shards"]] == [3000, 3000, len(one) - 6000]
    qs = [search_query(ex.question) for ex in load_sample("2wiki")[:100]]
    same = sum(
        a[0].doc == b[0].doc for a, b in zip(one.search_many(qs, 1), three.search_many(qs, 1), strict=True)
    )
    assert same >= 90, same
    title = one.search_many(["Teutberga"], 1)[0][0].doc["title"]
    assert three.find_page(title).sentences == one.find_page(title).sentences


def test_an_interrupted_build_resumes_after_its_last_shard(tmp_path, monkeypatch):
    from mtr_hpc.retrievers import bm25_index

    corpus = write_corpus(tmp_path / "c.jsonl", RECORDS * 3)
    cfg = IndexBuildConfig(shard_docs=4)
    real = bm25_index._ShardBuilder.finish
    finished: list[str] = []

    def crash_on_third(self, records):
        if len(finished) == 2:
            raise KeyboardInterrupt
        finished.append(self.folder.name)
        return real(self, records)

    monkeypatch.setattr(bm25_index._ShardBuilder, "finish", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        build_index(corpus, tmp_path / "ix", cfg, progress=False)
    assert not (tmp_path / "ix").exists() and (tmp_path / "ix.partial" / "plan.json").is_file()
    monkeypatch.setattr(bm25_index._ShardBuilder, "finish", real)
    logs: list[str] = []
    meta = build_index(corpus, tmp_path / "ix", cfg, progress=False, log=logs.append)
    assert logs == ["resuming after 2 finished shard(s), 8 passages"]
    assert meta["docs"] == len(RECORDS) * 3 and len(meta["shards"]) == 6
    assert not (tmp_path / "ix.partial").exists()
    fresh = build_index(corpus, tmp_path / "fresh", cfg, progress=False)
    assert [s["docs"] for s in fresh["shards"]] == [s["docs"] for s in meta["shards"]]
    a, b = BM25Index(tmp_path / "ix"), BM25Index(tmp_path / "fresh")
    assert [h.doc for h in a.search_many(["Analytical Engine"], 5)[0]] == [
        h.doc for h in b.search_many(["Analytical Engine"], 5)[0]
    ]


def test_a_bad_corpus_leaves_the_existing_index_alone(tmp_path):
    good = write_corpus(tmp_path / "good.jsonl", RECORDS)
    build_index(good, tmp_path / "ix", progress=False)
    with pytest.raises(IndexExistsError, match="--force"):
        build_index(good, tmp_path / "ix", progress=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text() + '{"title": "Cut", "te\n')
    with pytest.raises(DataError, match=r"bad\.jsonl, line 8"):
        build_index(bad, tmp_path / "ix", force=True, progress=False)
    assert BM25Index(tmp_path / "ix").meta["docs"] == len(RECORDS)  # the old index is intact
    meta = build_index(bad, tmp_path / "ix", IndexBuildConfig(skip_bad=True), force=True, progress=False)
    assert meta["docs"] == len(RECORDS) and meta["skipped"] == 1
    (tmp_path / "junk").mkdir()
    with pytest.raises(DataError, match="not an index directory"):
        BM25Index(tmp_path / "junk")


def test_ranks_as_rank_bm25_on_the_shipped_corpus():
    """The fidelity the demo's numbers rest on: the same top-3 pages as rank_bm25 (the earlier engine),
    in the same order, for at least 98 % of the benchmarks' questions (100 % when measured)."""
    import numpy as np
    from rank_bm25 import BM25Okapi

    from mtr_hpc.data import load_sample, sample_corpus_path
    from mtr_hpc.retrievers import open_retriever
    from mtr_hpc.sim.text import search_query, tokens

    passages = load_corpus(sample_corpus_path()).passages
    lib = BM25Okapi([tokens(f"{p.title} {p.text}") or ["_"] for p in passages])
    index = open_retriever(RetrievalEnvConfig(corpus="sample"))
    qs = [search_query(ex.question) for b in ("hotpotqa", "2wiki", "musique") for ex in load_sample(b)[:100]]
    got = index.search_many(qs, 3)
    same = sum(
        [passages[i].title for i in np.argsort(-lib.get_scores(tokens(q)), kind="stable")[:3]]
        == [h.doc["title"] for h in hits]
        for q, hits in zip(qs, got, strict=True)
    )
    assert same / len(qs) >= 0.98, same / len(qs)


@pytest.fixture
def served(tmp_path):
    server = RetrieverServer(index_of(RECORDS, tmp_path), RetrieverServeConfig(port=0)).start()
    yield server
    server.close()


def test_http_client_speaks_search_r1s_protocol(served):
    client = HttpRetriever(served.url, timeout_s=10)
    local = served.engine
    qs = ["Analytical Engine designed", "poet", "nothing matches zzzq"]
    remote = client.search_many(qs, 2)
    assert [[h.doc for h in row] for row in remote] == [
        [h.doc for h in row] for row in local.search_many(qs, 2)
    ]
    assert client.requests == 1  # one request for the batch
    assert client.find_page("Ada Lovelace").sentences == local.find_page("Ada Lovelace").sentences
    assert client.find_page("Atlantis") is None
    # The raw protocol, as Search-R1's clients send it.
    import urllib.request

    req = urllib.request.Request(
        served.url + "/retrieve",
        json.dumps({"queries": ["poet"], "topk": 1}).encode(),
        {"Content-Type": "application/json"},
    )
    body = json.loads(urllib.request.urlopen(req).read())
    doc = body["result"][0][0]
    assert doc["contents"].startswith('"Lord Byron"\n') or doc["contents"].startswith('"Ada Lovelace"\n')
    bad = urllib.request.Request(
        served.url + "/retrieve", b'{"queries": "poet"}', {"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(bad)
    assert err.value.code == 400


class _SearchR1Like(BaseHTTPRequestHandler):
    """A server with Search-R1's route only (no /page), FlashRAG documents, failing as told."""

    protocol_version = "HTTP/1.1"
    fail_first = 0
    delay_s = 0.0
    calls = 0

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        cls.calls += 1
        time.sleep(cls.delay_s)
        if self.path != "/retrieve":
            status, payload = 404, {"detail": "Not Found"}
        elif cls.calls <= cls.fail_first:
            status, payload = 503, {"detail": "busy"}
        else:
            docs = [{"id": str(i), "contents": f'"{t}"\n{x}'} for i, (t, x) in enumerate(RECORDS)]
            hits = [
                [{"document": d, "score": 1.0} for d in docs if any(w in d["contents"] for w in q.split())][
                    : body["topk"]
                ]
                for q in body["queries"]
            ]
            status, payload = 200, {"result": hits}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _start(handler) -> tuple[ThreadingHTTPServer, str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def test_http_client_retries_reads_flashrag_documents_and_finds_pages_by_search():
    handler = type("H", (_SearchR1Like,), {"fail_first": 2, "calls": 0})
    httpd, url = _start(handler)
    try:
        client = HttpRetriever(url, timeout_s=5, retry=RetryPolicy(max_retries=3, backoff_base_s=0.01))
        hits = client.search_many(["Babbage"], 3)[0]
        assert handler.calls == 3 and [h.doc["title"] for h in hits] == ["Charles Babbage"]
        # No /page route: the page is the hits titled as asked.
        page = client.find_page("Ada Lovelace")
        assert page.title == "Ada Lovelace" and len(page.sentences) == 3
        handler.fail_first, handler.calls = 10, 0
        with pytest.raises(RetrieverError, match=r"http_503.*after 4 attempts"):
            client.search_many(["Babbage"], 3)
    finally:
        httpd.shutdown()


def test_http_client_times_out_and_names_a_dead_server():
    handler = type("Slow", (_SearchR1Like,), {"delay_s": 1.0, "calls": 0})
    httpd, url = _start(handler)
    try:
        client = HttpRetriever(url, timeout_s=0.2, retry=RetryPolicy(max_retries=1, backoff_base_s=0.01))
        with pytest.raises(RetrieverError, match="timeout"):
            client.search_many(["Babbage"], 3)
    finally:
        httpd.shutdown()
        httpd.server_close()
    dead = HttpRetriever(url, timeout_s=1, retry=RetryPolicy(max_retries=1, backoff_base_s=0.01))
    with pytest.raises(RetrieverError, match="connection"):
        dead.search_many(["Babbage"], 3)
    with pytest.raises(ConfigError, match="retrieval.url"):
        HttpRetriever("localhost:8000")
    with pytest.raises(ConfigError, match="retrieval.url"):
        RetrievalEnvConfig(backend="http")


def test_a_turn_rounds_searches_go_to_the_engine_in_one_batch(tmp_path):
    from mtr_hpc.data import load_sample
    from mtr_hpc.sim import RetrievalSimulator
    from mtr_hpc.sim.protocol import answer_round

    index = index_of(RECORDS, tmp_path)
    batches: list[list[str]] = []
    real = index.search_many

    def counted(queries, top_k):
        batches.append(list(queries))
        return real(queries, top_k)

    index.search_many = counted
    examples = load_sample("hotpotqa")[:4]
    cfg = RetrievalEnvConfig(tools="search", batch_rounds="always")
    batched = RetrievalSimulator(index, cfg)
    setups = [batched.open(ex, 0) for ex in examples]
    assert all(s.batch is batched for s in setups)
    calls = [
        (s, "search", {"query": q})
        for s, q in zip(setups, ["Analytical Engine", "poet", "capital", "film"], strict=True)
    ]
    calls.append((setups[0], "open_page", {"title": "Ada Lovelace"}))
    got = answer_round(calls)
    assert batches == [["Analytical Engine", "poet", "capital", "film"]]
    one_by_one = RetrievalSimulator(index, RetrievalEnvConfig(tools="search"))
    plain = [one_by_one.open(ex, 0) for ex in examples]
    assert plain[0].batch is None
    want = [p.call(name, args) for p, (_, name, args) in zip(plain + plain[:1], calls, strict=True)]
    assert got == want


def test_cli_builds_searches_and_serves(tmp_path):
    corpus = write_corpus(tmp_path / "c.jsonl", RECORDS, flashrag=True)
    run = [sys.executable, "-m", "mtr_hpc.cli"]
    out = subprocess.run(
        run + ["index", "build", "--corpus", str(corpus), "--out", str(tmp_path / "ix"), "--no-progress"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert "indexed 7 passages in 1 shard(s)" in out.stdout
    again = subprocess.run(
        run + ["index", "build", "--corpus", str(corpus), "--out", str(tmp_path / "ix")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert again.returncode == 2 and "--force" in again.stderr
    found = subprocess.run(
        run + ["index", "search", str(tmp_path / "ix"), "Analytical Engine", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["hits"][0]["title"] in ("Charles Babbage", "Ada Lovelace")
    proc = subprocess.Popen(
        run + ["serve-retriever", str(tmp_path / "ix"), "--port", "0"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        assert "serving" in line, line
        url = line.rsplit(" at ", 1)[1].strip()
        client = HttpRetriever(url, timeout_s=10)
        assert client.search_many(["Babbage"], 1)[0][0].doc["title"] == "Charles Babbage"
        assert client.find_page("Ada Lovelace").title == "Ada Lovelace"
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def _tiny_encoder(folder: Path, texts: list[str]) -> Path:
    """A randomly initialised BERT encoder (e5's architecture, tiny) with a WordPiece tokenizer trained
    on `texts`: no hub needed."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials))
    fast = BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(fast),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(cfg).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def test_dense_index_embeds_searches_and_serves(tmp_path):
    import numpy as np

    from mtr_hpc.retrievers import open_retriever
    from mtr_hpc.retrievers.dense import DenseBuildConfig, DenseIndex, Encoder, build_dense_index, contents

    texts = [contents(t, x) for t, x in RECORDS]
    encoder = _tiny_encoder(tmp_path / "enc", texts)
    corpus = write_corpus(tmp_path / "c.jsonl", RECORDS, flashrag=True)
    # No prefixes, so a passage's own contents, as a query, must find it first at cosine 1.
    cfg = DenseBuildConfig(str(encoder), batch_size=3, query_prefix="", passage_prefix="")
    meta = build_dense_index(corpus, tmp_path / "dix", cfg, progress=False)
    assert meta["docs"] == len(RECORDS) and meta["dim"] == 32
    index = open_retriever(RetrievalEnvConfig(backend="dense", corpus=str(tmp_path / "dix")))
    assert isinstance(index, DenseIndex)
    hits = index.search_many(texts, 1)
    assert [h[0].doc["text"] for h in hits] == [x for _, x in RECORDS]
    assert all(abs(h[0].score - 1.0) < 1e-4 for h in hits)
    # faiss's top 3 are numpy's exact inner products of the normalized mean-pooled embeddings.
    enc = Encoder(str(encoder))
    passages, query = enc.encode(texts), enc.encode(["who designed the engine"])
    assert np.allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-5)
    exact = (passages @ query[0]).astype(float)
    got = index.search_many(["who designed the engine"], 3)[0]
    assert [h.doc["text"] for h in got] == [RECORDS[i][1] for i in np.argsort(-exact, kind="stable")[:3]]
    assert np.allclose([h.score for h in got], np.sort(exact)[::-1][:3], atol=1e-5)
    assert len(index.find_docs("Ada Lovelace")) == 2 and index.find_page("Atlantis") is None
    with pytest.raises(ConfigError, match="retrieval.backend=dense"):
        open_retriever(RetrievalEnvConfig(backend="bm25", corpus=str(tmp_path / "dix")))
    server = RetrieverServer(index, RetrieverServeConfig(port=0)).start()
    try:
        remote = HttpRetriever(server.url, timeout_s=10).search_many(["who designed the engine"], 3)[0]
        assert [h.doc for h in remote] == [h.doc for h in got]
    finally:
        server.close()


def test_dense_without_faiss_is_a_clear_error(tmp_path, monkeypatch):
    from mtr_hpc.errors import MissingDependencyError
    from mtr_hpc.retrievers.dense import DenseBuildConfig, build_dense_index

    monkeypatch.setitem(sys.modules, "faiss", None)
    corpus = write_corpus(tmp_path / "c.jsonl", RECORDS)
    with pytest.raises(MissingDependencyError, match="faiss"):
        build_dense_index(corpus, tmp_path / "dix", DenseBuildConfig("enc"), progress=False)
    with pytest.raises(ConfigError, match="encoder"):
        DenseBuildConfig()


def test_exact_titles_win_across_shards_and_a_split_page_comes_back_whole(tmp_path):
    recs = [("Paris (band)", "A band."), ("X0", "x"), ("X1", "x"), ("X2", "x"), ("Paris", "The city, one."),
            ("Paris", "The city, two.")]  # fmt: skip
    index = index_of(recs, tmp_path, cfg=IndexBuildConfig(shard_docs=5))
    assert len(index.meta["shards"]) == 2
    assert [d["text"] for d in index.find_docs("Paris")] == ["The city, one.", "The city, two."]
    assert [d["title"] for d in index.find_docs("paris")] == ["Paris", "Paris"]
    assert index.find_page("Paris (band)").sentences == ["A band."]


def test_ties_at_the_cut_go_to_the_earlier_passages(tmp_path):
    recs = [(f"T{i}", "apple pie") for i in range(30)] + [(f"F{i}", f"filler {i} words") for i in range(40)]
    index = index_of(recs, tmp_path)
    assert [h.doc["title"] for h in index.search_many(["apple"], 3)[0]] == ["T0", "T1", "T2"]
    assert [p.title for p in index.rank("apple", 2, {"T0"})] == ["T1", "T2"]


def test_a_lone_surrogate_is_a_bad_record_not_a_crash(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"title": "A", "text": "a b"}\n{"title": "B\\ud800", "text": "x"}\n')
    with pytest.raises(DataError, match=r"line 2: field 'title' holds a lone surrogate"):
        build_index(path, tmp_path / "ix", progress=False)
    meta = build_index(path, tmp_path / "ix", IndexBuildConfig(skip_bad=True), progress=False)
    assert (meta["docs"], meta["skipped"]) == (1, 1)


def test_the_client_recovers_from_a_garbled_answer_and_engine_failures_are_retryable():
    import socketserver

    answers = [b"GARBAGE\r\n\r\n"]

    class Raw(socketserver.StreamRequestHandler):
        timeout = 10  # the client keeps its connection open: end the handler after a while

        def handle(self):
            while True:
                line = self.rfile.readline()
                if not line:
                    return
                length = 0
                while line not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                    line = self.rfile.readline()
                self.rfile.read(length)
                if answers:
                    self.wfile.write(answers.pop())
                    return
                body = json.dumps(
                    {"result": [[{"document": {"id": "1", "contents": '"T"\nx'}, "score": 1}]]}
                ).encode()
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Raw)
    srv.daemon_threads, srv.block_on_close = True, False  # never wait on a kept-alive connection
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        client = HttpRetriever(
            f"http://127.0.0.1:{srv.server_address[1]}",
            timeout_s=5,
            retry=RetryPolicy(max_retries=2, backoff_base_s=0.01),
        )
        assert client.search_many(["q"], 1)[0][0].doc["title"] == "T"  # retried on a fresh connection
        assert client.search_many(["q"], 1)[0][0].doc["title"] == "T"
    finally:
        srv.shutdown()
        srv.server_close()

    class Broken(BM25Index):
        def __init__(self):
            self.max_k, self.path = 10, "broken"

        def search_many(self, queries, top_k):
            raise ValueError("the engine broke")

    server = RetrieverServer(Broken(), RetrieverServeConfig(port=0)).start()
    try:
        client = HttpRetriever(server.url, timeout_s=5, retry=RetryPolicy(max_retries=1, backoff_base_s=0.01))
        with pytest.raises(RetrieverError, match=r"http_500.*the engine broke.*after 2 attempts"):
            client.search_many(["q"], 1)
        conn = __import__("http.client").client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
        conn.putrequest("POST", "/retrieve")
        conn.putheader("Content-Length", "many")
        conn.endheaders()
        assert conn.getresponse().status == 400
    finally:
        server.close()
