"""Configs of the tool simulators' parts: the ToolMaker (which tools an episode gets), the ToolActor
(what answers them) and the retrieval environment. Synthesis, GRPO and evaluation nest them in their
own configs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class ToolMakerConfig:
    backend: Literal["template", "llm"] = "template"
    # `dataset` trusts the benchmark's qtype where it has one and falls back to rules.
    classifier: Literal["dataset", "rules", "llm"] = "dataset"
    utility_tools: list[str] = field(default_factory=lambda: ["search", "open_page", "compare"])
    # Times an `llm` interface that fails validation is re-requested before the template is used.
    llm_retries: int = 2
    max_tokens: int = 512
    temperature: float = 0.0


@dataclass
class ResultsConfig:
    """What a search-like tool returns, the same in every environment (`sim/observations.py`): what the
    policy reads in training is what it reads against a real engine."""

    # Three passages, as Search-R1 retrieves (k = 3 beat 1 and 5 there): each costs later turns tokens.
    top_k: int = 3
    # A passage longer than this is cut to its sentences that best match the query (Search-R1's
    # passages are 100 words).
    passage_words: int = 100
    # `open_page` returns a page's sentences up to this many words.
    page_words: int = 200

    def __post_init__(self) -> None:
        from ..config import check_min

        check_min("", self, top_k=1, passage_words=10, page_words=10)


@dataclass
class ToolActorConfig:
    backend: Literal["grounded", "llm"] = "grounded"
    results: ResultsConfig = field(default_factory=ResultsConfig)
    # Passages mixed into each example's search collection as distractors: other examples' pages, or
    # the `corpus`'s when one is set.
    n_distractors: int = 4
    # A passage corpus (a path, or `sample`) the grounded simulator reads: an example's pages that its
    # record lacks (the titles of its supporting facts and fact subjects) come from the corpus, and so
    # do its distractors. Empty: the record's own evidence only.
    corpus: str = ""
    # Noise: the probability that a search or lookup holds the example's gold pages back from its
    # results (seeded per call, so replayable), as ZeroSearch's noisy documents. A curriculum raises it
    # linearly from `noise` to `noise_final` over `noise_ramp_steps` GRPO steps (-1: no curriculum).
    noise: float = 0.0
    noise_final: float = -1.0
    noise_ramp_steps: int = 0
    # `llm`: the example's evidence is shown to the simulator as a hint.
    evidence_hint: bool = True
    llm_retries: int = 2
    # A tool request unanswered after this long is retried, then an `llm_error` observation. 0: no limit
    # here; an endpoint's client has its own (`timeout_s` of its LLM config), and a model in this process
    # always finishes (a timed-out request would only queue its retry behind itself).
    llm_timeout_s: float = 0.0
    max_tokens: int = 384
    temperature: float = 0.0
    # Replay cache file (JSONL); empty keeps the cache in memory only.
    cache_path: str = ""
    # Skip per-call validation of grounded observations of template tools (built in their exact shape;
    # `validate_trace` still checks every observation of a kept trace).
    trust_templates: bool = True

    def __post_init__(self) -> None:
        from ..config import check_min
        from ..errors import ConfigError

        check_min("", self, n_distractors=0, noise_ramp_steps=0)
        for key in ("noise", "noise_final"):
            value = getattr(self, key)
            if not (0.0 <= value <= 1.0) and not (key == "noise_final" and value == -1.0):
                raise ConfigError(key, f"must be a probability in [0, 1], got {value!r}")

    def noise_at(self, step: int) -> float:
        """The hold-back probability at GRPO step `step` (0-based) under the curriculum."""
        if self.noise_final < 0 or self.noise_ramp_steps <= 0:
            return self.noise
        frac = min(1.0, max(0, step) / self.noise_ramp_steps)
        return self.noise + (self.noise_final - self.noise) * frac


@dataclass
class RetrievalEnvConfig:
    """The `retrieval` environment: a real search engine behind the policy's tools.

    `backend: bm25` searches `corpus` on this machine: a corpus file (JSON lines of {title, text} or
    FlashRAG's {id, contents}, gzipped or not; indexed into the cache on first use, `mtr index build`
    ahead of time), an index directory `mtr index build` wrote, or `sample`, the corpus shipped in the
    package (the 2WikiMultiHopQA passages and the HotpotQA sample's context paragraphs; MuSiQue and
    Bamboogle have none in it). `backend: dense` searches a dense index directory (`mtr index build
    --kind dense`: e5 embeddings in faiss), embedding queries with `encoder` (default: the one it was
    built with) on `device`. `backend: http` asks a retrieval server at `url` in Search-R1's protocol
    (`mtr serve-retriever`, or Search-R1's e5 + faiss or BM25 server)."""

    backend: Literal["bm25", "dense", "http"] = "bm25"
    corpus: str = "sample"
    url: str = ""
    encoder: str = ""
    device: str = "cpu"
    # http: seconds the server may stay silent (connecting, or between reads), and retries of a failed
    # request (connection, timeout, 429, 5xx).
    timeout_s: float = 30.0
    max_retries: int = 3
    # `toolmaker`: the tools of training (the ToolMaker's, relation tools read real pages); `search`:
    # `search` and `open_page` alone, as live-search agents have.
    tools: Literal["toolmaker", "search"] = "toolmaker"
    # The same format as the simulators' (`ToolActorConfig.results`): keep them equal.
    results: ResultsConfig = field(default_factory=ResultsConfig)
    # Malformed corpus records are an error unless this is set (then they are skipped and counted).
    skip_bad: bool = False
    # `always`: the searches of a turn round go to the engine together (one batch, one request to a
    # server), and episodes advance in rounds rather than each as soon as its turn is sampled; `never`:
    # each call on its own; `auto`: rounds for a server (a request per call would cost a round trip
    # each), single calls for a local index (a search takes about a millisecond, and continuous
    # batching keeps the policy's engine fuller).
    batch_rounds: Literal["auto", "always", "never"] = "auto"
    # Threads of a local index's batched search; 0: every core.
    threads: int = 0

    @property
    def batches_rounds(self) -> bool:
        return self.batch_rounds == "always" or (self.batch_rounds == "auto" and self.backend == "http")

    def __post_init__(self) -> None:
        from ..config import check_min
        from ..errors import ConfigError

        check_min("retrieval.", self, max_retries=0, threads=0)
        if self.backend == "http" and not self.url:
            raise ConfigError("retrieval.url", "backend http needs the retrieval server's url")
        if self.backend not in ("bm25", "dense", "http"):
            raise ConfigError("retrieval.backend", f"expected bm25, dense or http, got {self.backend!r}")
        if self.backend != "http" and not self.corpus:
            raise ConfigError(
                "retrieval.corpus", f"backend {self.backend} needs a corpus file or an index directory"
            )
        if self.batch_rounds not in ("auto", "always", "never"):
            raise ConfigError(
                "retrieval.batch_rounds", f"expected auto, always or never, got {self.batch_rounds!r}"
            )
        if self.timeout_s <= 0:
            raise ConfigError("retrieval.timeout_s", f"must be positive, got {self.timeout_s}")
