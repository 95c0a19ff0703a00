"""`mtr serve-retriever`: a search engine served over HTTP for a whole job, in Search-R1's protocol.

`POST /retrieve` `{"queries": [...], "topk": k, "return_scores": bool}` -> `{"result": [...]}`, one list
per query of `{"document": {"id", "title", "text", "contents"}, "score": s}` (or of bare documents
without `return_scores`); `contents` is FlashRAG's `"Title"\\ntext`, so Search-R1's own clients read it.
`POST /page` `{"title"}` -> `{"result": [documents]}`, the passages of one page (this project's
`open_page`; absent from Search-R1's server). `GET /health`. Bad requests are 400 with a message.

Built on the standard library's `ThreadingHTTPServer`, like `mtr serve`; searches are serialized (the
engine uses every core for one batch, so concurrent batches would only contend).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .base import SearchEngine

MAX_QUERIES = 4096


@dataclass
class RetrieverServeConfig:
    host: str = "127.0.0.1"
    port: int = 8010
    topk: int = 3


def _served(doc: dict[str, str]) -> dict[str, str]:
    return {**doc, "contents": f'"{doc["title"]}"\n{doc["text"]}'}


class _BadRequest(Exception):
    pass


class RetrieverServer:
    def __init__(self, engine: SearchEngine, cfg: RetrieverServeConfig | None = None):
        self.engine, self.cfg = engine, cfg or RetrieverServeConfig()
        self.lock = threading.Lock()
        self.requests = 0
        handler = type("Handler", (_Handler,), {"app": self})
        self.httpd = ThreadingHTTPServer((self.cfg.host, self.cfg.port), handler)
        self.httpd.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def start(self) -> RetrieverServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def retrieve(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("queries"), list):
            raise _BadRequest("expected a JSON object with 'queries': [strings]")
        queries = body["queries"]
        if not all(isinstance(q, str) for q in queries) or len(queries) > MAX_QUERIES:
            raise _BadRequest(f"'queries' must be at most {MAX_QUERIES} strings")
        topk = body.get("topk") or self.cfg.topk
        if not isinstance(topk, int) or topk < 1:
            raise _BadRequest(f"'topk' must be a positive integer, got {topk!r}")
        with self.lock:
            hits = self.engine.search_many(queries, min(topk, self.engine.max_k))
        if body.get("return_scores"):
            return {"result": [[{"document": _served(h.doc), "score": h.score} for h in row] for row in hits]}
        return {"result": [[_served(h.doc) for h in row] for row in hits]}

    def page(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("title"), str):
            raise _BadRequest("expected a JSON object with 'title': string")
        find = getattr(self.engine, "find_docs", None)
        with self.lock:
            docs = find(body["title"]) if find is not None else []
        return {"result": [_served(d) for d in docs]}


class _Handler(BaseHTTPRequestHandler):
    app: RetrieverServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: a job sends thousands
        pass

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, {"status": "ok", "docs": self.app.engine.max_k})
        else:
            self._send(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            self._send(400, {"error": "Content-Length is not a number"})
            return
        raw = self.rfile.read(length)
        route = {"/retrieve": self.app.retrieve, "/page": self.app.page}.get(self.path)
        if route is None:
            self._send(404, {"error": f"no route {self.path}"})
            return
        try:
            body = json.loads(raw)
        except ValueError as exc:
            self._send(400, {"error": f"the body is not JSON: {exc}"})
            return
        self.app.requests += 1
        try:
            payload = route(body)
        except _BadRequest as exc:
            self._send(400, {"error": str(exc)})
            return
        except Exception as exc:  # a search that fails is the server's fault, not the request's
            self._send(500, {"error": f"{type(exc).__name__}: {exc}"})
            return
        self._send(200, payload)
