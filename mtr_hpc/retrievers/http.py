"""`retrieval.backend: http`: a retrieval server speaking Search-R1's protocol.

`POST {url}/retrieve` with `{"queries": [...], "topk": k, "return_scores": true}` answers
`{"result": [[{"document": {...}, "score": s}, ...], ...]}`, one list per query. The documents are
corpus records: FlashRAG's `{"id", "contents"}` (title on the first line) from a dense (e5 + faiss)
server, `{"title", "text", "contents"}` from its BM25 (Pyserini) server, or `mtr serve-retriever`'s.
A round's queries go in one request (`rank_many`).

`open_page` needs a page by title, which the protocol has no route for: `mtr serve-retriever` answers
`POST {url}/page` (`{"title"}` -> `{"result": [documents]}`); another server is asked to search the
title, and the hits of that title make the page.

Failed requests (connection errors, timeouts, 429 and 5xx) are retried with capped exponential backoff;
a server that stays down is a `RetrieverError` (a `RunFailure`: the run stops loudly rather than
scoring answers against no search results), and any other 4xx fails at once.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from ..data.corpus import split_contents
from ..errors import ConfigError, RunFailure
from ..llm.openai_http import RetryPolicy
from ..sim.retrieval import Passage
from ..sim.text import loose_key, norm_key
from .base import Hit, SearchEngine, page_of


class RetrieverError(RunFailure):
    def __init__(self, kind: str, message: str, retryable: bool = False):
        self.kind, self.detail, self.retryable = kind, message, retryable
        super().__init__(f"retriever {kind}: {message}")


def parse_doc(doc: Any, where: str) -> dict[str, str]:
    """A served document as `{"id", "title", "text"}`."""
    if not isinstance(doc, dict):
        raise RetrieverError("bad_response", f"{where}: a document is not a JSON object")
    if isinstance(doc.get("title"), str) and isinstance(doc.get("text"), str):
        title, text = doc["title"], doc["text"]
    elif isinstance(doc.get("contents"), str):
        title, text = split_contents(doc["contents"])
    else:
        raise RetrieverError("bad_response", f"{where}: a document has neither title/text nor contents")
    return {"id": str(doc.get("id", "")), "title": title, "text": text}


def parse_result(data: Any, n: int, where: str) -> list[list[Hit]]:
    result = data.get("result") if isinstance(data, dict) else None
    if not isinstance(result, list) or len(result) != n:
        got = len(result) if isinstance(result, list) else type(result).__name__
        raise RetrieverError("bad_response", f"{where}: expected 'result' with {n} lists, got {got}")
    out = []
    for hits in result:
        if not isinstance(hits, list):
            raise RetrieverError("bad_response", f"{where}: a query's result is not a list")
        row = []
        for h in hits:
            if isinstance(h, dict) and "document" in h:
                try:
                    score = float(h.get("score") or 0.0)
                except (TypeError, ValueError):
                    raise RetrieverError("bad_response", f"{where}: a score is not a number") from None
                row.append(Hit(parse_doc(h["document"], where), score))
            else:
                row.append(Hit(parse_doc(h, where), 0.0))
        out.append(row)
    return out


class HttpRetriever(SearchEngine):
    """A client of one retrieval server; thread-safe (a keep-alive connection per thread)."""

    def __init__(self, url: str, timeout_s: float = 30.0, retry: RetryPolicy | None = None, max_k: int = 50):
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("retrieval.url", f"expected http://host:port, got {url!r}")
        self.url, self.parts = url.rstrip("/"), parts
        self.path = self.url
        self.timeout_s, self.retry, self.max_k = timeout_s, retry or RetryPolicy(), max_k
        self._local = threading.local()
        self._rng = random.Random(0)
        self._has_page_route: bool | None = None
        self.requests = 0

    def _drop(self) -> None:
        """Close this thread's connection: after any failure its state is unknown (a response read
        halfway leaves `http.client` refusing every later request on it)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def _conn(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            cls = http.client.HTTPSConnection if self.parts.scheme == "https" else http.client.HTTPConnection
            conn = self._local.conn = cls(self.parts.hostname, self.parts.port, timeout=self.timeout_s)
        return conn

    def _post_once(self, route: str, body: dict[str, Any]) -> tuple[int, bytes]:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        url = self.parts.path + route
        for attempt in range(2):  # a kept-alive connection the server closed: reconnect once
            conn = self._conn(fresh=attempt > 0)
            try:
                conn.request("POST", url, body=data, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.read()
            except TimeoutError as exc:
                self._drop()
                raise RetrieverError(
                    "timeout",
                    f"{self.url}{route}: a read or write waited over {self.timeout_s}s",
                    retryable=True,
                ) from exc
            except (http.client.HTTPException, OSError) as exc:
                self._drop()
                if attempt == 0 and isinstance(exc, http.client.RemoteDisconnected | BrokenPipeError):
                    continue
                raise RetrieverError(
                    "connection", f"{self.url}{route}: {type(exc).__name__}: {exc}", retryable=True
                ) from None
        raise RetrieverError("connection", f"{self.url}{route}: the server closed the connection", True)

    def post(self, route: str, body: dict[str, Any]) -> Any:
        """The JSON answer of `route`, retried per the policy; `None` for a 404 (no such route)."""
        attempt = 0
        while True:
            self.requests += 1
            try:
                status, raw = self._post_once(route, body)
                if status == 404:
                    return None
                if status == 429 or status >= 500:
                    raise RetrieverError(
                        f"http_{status}", f"{self.url}{route}: {raw[:200]!r}", retryable=True
                    )
                if status >= 400:
                    raise RetrieverError(f"http_{status}", f"{self.url}{route}: {raw[:200]!r}")
                try:
                    return json.loads(raw)
                except ValueError:
                    raise RetrieverError(
                        "bad_response", f"{self.url}{route}: the answer is not JSON"
                    ) from None
            except RetrieverError as exc:
                if not exc.retryable or attempt >= self.retry.max_retries:
                    if exc.retryable:
                        raise RetrieverError(
                            exc.kind, f"{exc.detail} (after {attempt + 1} attempts)"
                        ) from None
                    raise
                time.sleep(self.retry.delay(attempt, self._rng))
                attempt += 1

    def search_many(self, queries: list[str], top_k: int) -> list[list[Hit]]:
        if not queries or top_k <= 0:
            return [[] for _ in queries]
        data = self.post("/retrieve", {"queries": queries, "topk": top_k, "return_scores": True})
        if data is None:
            raise RetrieverError(
                "http_404", f"{self.url}/retrieve: no such route (is this a retrieval server?)"
            )
        return parse_result(data, len(queries), f"{self.url}/retrieve")

    def find_page(self, title: str) -> Passage | None:
        if not title.strip():
            return None
        if self._has_page_route is not False:
            data = self.post("/page", {"title": title})
            self._has_page_route = data is not None
            if data is not None:
                result = data.get("result") if isinstance(data, dict) else None
                docs = parse_result({"result": [result]}, 1, f"{self.url}/page")[0]
                return page_of([h.doc for h in docs])
        hits = self.search_many([title], min(10, self.max_k))[0]
        for fn in (norm_key, loose_key):
            key = fn(title)
            docs = [h.doc for h in hits if key and fn(h.doc["title"]) == key]
            if docs:
                return page_of([d for d in docs if d["title"] == docs[0]["title"]])
        return None
