"""Everything an eval run needs, loaded and checked before any model is: the up-front validation.

Model paths are checked for shape (not loaded), every benchmark is loaded and sampled, the retrieval
corpus is read and indexed, and training run directories are checked, so a typo or a bad file fails
in seconds with a `MtrError` naming it, not after an hour of generation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from ..data import load_benchmark, sample_corpus_path, sample_path
from ..data.example import QAExample, example_key
from ..data.loaders import canonical_benchmark
from ..data.splits import select_part
from ..data.trained_on import trained_keys
from ..errors import ConfigError, DataError, MtrError
from ..retrievers import SearchEngine, open_retriever
from .config import BenchmarkSpec, EvalConfig, validate_config
from .models import ModelSource, check_model


@dataclass
class EvalPlan:
    cfg: EvalConfig
    models: list[ModelSource]
    examples: dict[str, list[QAExample]]  # benchmark name (as configured) -> questions
    conventions: dict[str, str]  # benchmark name -> canonical benchmark (scoring convention)
    corpus: SearchEngine | None
    # benchmark name -> {training run dir: questions of the benchmark that run trained on}
    train_overlap: dict[str, dict[str, int]]


def load_questions(spec: BenchmarkSpec, index: int) -> tuple[str, list[QAExample]]:
    """(canonical benchmark, questions): the whole source, or `limit` of them drawn with `seed`."""
    key = "benchmark" if spec.benchmark else "name"
    try:
        bench = canonical_benchmark(spec.benchmark or spec.name)
    except MtrError as exc:
        raise ConfigError(f"benchmarks[{index}].{key}", str(exc)) from None
    source = sample_path(bench) if spec.source == "sample" else spec.source
    if spec.source != "sample" and not spec.source.startswith("hf://") and not Path(source).is_file():
        raise ConfigError(f"benchmarks[{index}].source", f"benchmark file {source} does not exist")
    loaded = load_benchmark(bench, source, skip_bad=spec.skip_bad, split=spec.split)
    examples = select_part(loaded.examples, spec.part, key=f"benchmarks[{index}].part")
    if not examples:
        raise DataError(loaded.path, None, None, f"holds no usable questions (part: {spec.part})")
    if 0 < spec.limit < len(examples):
        picks = sorted(random.Random(spec.seed).sample(range(len(examples)), spec.limit))
        examples = [examples[i] for i in picks]
    return bench, examples


def build_plan(cfg: EvalConfig) -> EvalPlan:
    validate_config(cfg)
    models = [check_model(m, i) for i, m in enumerate(cfg.models)]
    examples: dict[str, list[QAExample]] = {}
    conventions: dict[str, str] = {}
    for i, spec in enumerate(cfg.benchmarks):
        conventions[spec.name], examples[spec.name] = load_questions(spec, i)
    for i, run in enumerate(cfg.training_runs):
        if not (Path(run) / "metrics.jsonl").is_file():
            raise ConfigError(f"training_runs[{i}]", f"{run} has no metrics.jsonl (not a training run dir)")
    overlap = train_overlap(cfg, models, examples)
    corpus = None
    if "tools" in cfg.modes and "retrieval" in cfg.envs:
        if cfg.retrieval.backend == "bm25":
            path = sample_corpus_path() if cfg.retrieval.corpus == "sample" else Path(cfg.retrieval.corpus)
            if not path.exists():
                raise ConfigError("retrieval.corpus", f"{path}: no such corpus file or index directory")
        corpus = open_retriever(cfg.retrieval)
    return EvalPlan(cfg, models, examples, conventions, corpus, overlap)


def train_overlap(
    cfg: EvalConfig, models: list[ModelSource], examples: dict[str, list[QAExample]]
) -> dict[str, dict[str, int]]:
    """Questions to evaluate that a training run learned from: the runs in `training_runs` and those
    behind each evaluated model. A `ConfigError` unless `allow_train_overlap` is set."""
    runs: dict[str, set[str]] = {}
    for path in [*cfg.training_runs, *(m.path for m in models if m.kind != "embedded")]:
        runs.update(trained_keys(path))
    found: dict[str, dict[str, int]] = {}
    for i, (bench, exs) in enumerate(examples.items()):
        for run, keys in sorted(runs.items()):
            hits = [ex.id for ex in exs if example_key(ex.benchmark, ex.id) in keys]
            if not hits:
                continue
            if not cfg.allow_train_overlap:
                raise ConfigError(
                    f"benchmarks[{i}]",
                    f"{len(hits)} of {len(exs)} questions of '{bench}' were trained on by the run {run} "
                    f"(e.g. id {hits[0]}); evaluate questions no training run saw (`part: heldout` of the "
                    "files the runs trained on, or another split), or set allow_train_overlap=true to score "
                    "them anyway, marked in the report",
                )
            found.setdefault(bench, {})[run] = len(hits)
    return found
