"""Eval building blocks without a model: retrieval environment, prediction journal, results/report, plots,
config validation."""

from __future__ import annotations

import json

import pytest
from _corpus import index_of

from mtr_hpc.data.example import QAExample
from mtr_hpc.errors import ConfigError, DataError
from mtr_hpc.eval.config import (
    BenchmarkSpec,
    EvalConfig,
    ModelSpec,
    RetrievalEnvConfig,
    settings,
    validate_config,
)
from mtr_hpc.eval.journal import PredictionJournal
from mtr_hpc.eval.plots import curve_keys, plot_scores, plot_training_curves
from mtr_hpc.eval.report import build_results, find_cell, render_report
from mtr_hpc.llm.config import LLMConfig
from mtr_hpc.retrievers.bm25_index import build_index
from mtr_hpc.sim import RetrievalSimulator
from mtr_hpc.sim.config import ResultsConfig
from mtr_hpc.sim.observations import page_payload, search_payload
from mtr_hpc.sim.retrieval_env import split_sentences
from mtr_hpc.toolspec import ToolRegistry

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _ex(i: int, answer: str, qtype: str = "bridge", bench: str = "hotpotqa") -> QAExample:
    return QAExample(f"q{i}", bench, f"Question {i}?", [answer], qtype)


@pytest.fixture
def index(tmp_path):
    passages = [
        ("Teutberga", "Teutberga died on 11 November 875. She was a queen of Lotharingia."),
        ("Lothair II", "Lothair II was king of Lotharingia. He married Teutberga in 855."),
        ("Paris", "Paris is the capital of France. It lies on the Seine."),
        ("Paris", "Paris has about two million inhabitants."),
    ]
    # Fillers, so that a word of two passages weighs something (Okapi's idf is 0 for a word in half).
    passages += [(f"Item {i}", f"Item {i} is a filler passage.") for i in range(6)]
    return index_of(passages, tmp_path)


def test_split_sentences():
    assert split_sentences("One two. Three four! Five? ") == ["One two.", "Three four!", "Five?"]
    assert split_sentences("Born in 1990. 2000 was later.") == ["Born in 1990.", "2000 was later."]


def test_corpus_index_search_and_open_page(index, tmp_path):
    fmt = ResultsConfig(top_k=2, passage_words=10)
    res = search_payload(index, "capital of France", 2, fmt)
    assert res["query"] == "capital of France"
    # A page over the word budget keeps its sentences that best match the query.
    assert res["results"][0] == {"title": "Paris", "snippet": "Paris is the capital of France."}
    assert search_payload(index, "Teutberga queen", 1, fmt)["results"][0]["title"] == "Teutberga"
    # Passages sharing a title form one page; titles match without case and punctuation.
    page = page_payload(index, "paris", ResultsConfig())
    assert page["found"] and page["title"] == "Paris" and len(page["sentences"]) == 3
    assert page_payload(index, "paris", ResultsConfig(page_words=12))["sentences"] == [
        "Paris is the capital of France.",
        "It lies on the Seine.",
    ]
    assert page_payload(index, "Atlantis", fmt) == {"title": "Atlantis", "found": False, "sentences": []}
    (tmp_path / "blank.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="empty"):
        build_index(tmp_path / "blank.jsonl", tmp_path / "ix", progress=False)


def test_retrieval_simulator_answers_from_the_corpus(index):
    search_only = RetrievalSimulator(index, RetrievalEnvConfig(tools="search"))
    setup = search_only.open(_ex(0, "875"), seed=0)
    registry = ToolRegistry(setup.tools)
    assert [t["function"]["name"] for t in setup.tools] == ["search", "open_page"]
    obs = setup.call("search", {"query": "When did Teutberga die?", "top_k": 1})
    assert obs["results"][0]["title"] == "Teutberga" and len(obs["results"]) == 1
    assert not registry.validate_observation("search", obs)
    page = setup.call("open_page", {"title": "Lothair II"})
    assert page["found"] and not registry.validate_observation("open_page", page)
    assert setup.call("get_father", {"person": "x"})["error"]["type"] == "unknown_tool"
    # By default the tools of training: a relation tool reads the entity's page first, then the best
    # passages for "<entity> <relation>", in the search format.
    ex = QAExample(
        "w",
        "2wiki",
        "Who was Teutberga's spouse?",
        ["Lothair II"],
        "compositional",
        {"triples": [["Teutberga", "spouse", "Lothair II"]]},
    )
    setup = RetrievalSimulator(index).open(ex, seed=0)
    names = [t["function"]["name"] for t in setup.tools]
    assert "get_spouse" in names and "search" in names
    obs = setup.call("get_spouse", {"person": "teutberga"})
    assert [r["title"] for r in obs["results"]][:2] == ["Teutberga", "Lothair II"]
    assert (obs["entity"], obs["relation"]) == ("teutberga", "spouse")
    assert not ToolRegistry(setup.tools).validate_observation("get_spouse", obs)


def test_journal_appends_resumes_and_repairs_a_cut_tail(tmp_path):
    path = tmp_path / "predictions.jsonl"
    j = PredictionJournal(path)
    recs = [
        {"model": "m", "mode": "direct", "env": "", "benchmark": "b", "id": f"q{i}", "prediction": str(i)}
        for i in range(3)
    ]
    j.append(recs[:2])
    j.append(recs[2:])
    again = PredictionJournal(path)
    assert len(again) == 3 and ("m", "direct", "b", "q1") in again
    assert [r["prediction"] for r in again.select("m", "direct", "b")] == ["0", "1", "2"]
    path.write_text(path.read_text() + '{"model": "m", "mo')
    repaired = PredictionJournal(path)
    assert len(repaired) == 3 and path.read_text().endswith("}\n")
    path.write_text('{"model": "m"}\n' + path.read_text())
    with pytest.raises(DataError, match=r"line 1.*mode"):
        PredictionJournal(path)
    path.write_text("not json\n" + json.dumps(recs[0]) + "\n")
    with pytest.raises(DataError, match="line 1"):
        PredictionJournal(path)
    # One question in two tool environments: two records, each selected by its own setting.
    path.unlink()
    envs = PredictionJournal(path)
    envs.append([{**recs[0], "mode": "tools", "env": e, "prediction": e} for e in ("grounded", "retrieval")])
    again = PredictionJournal(path)
    assert len(again) == 2 and ("m", "tools/retrieval", "b", "q0") in again
    assert [r["prediction"] for r in again.select("m", "tools/grounded", "b")] == ["grounded"]


def _records(mode: str, preds: dict[str, str], calls=0, invalid=0, valid=True, turns=1):
    return [
        {
            "id": i,
            "prediction": p,
            "tool_calls": calls,
            "invalid_calls": invalid,
            "format_valid": valid,
            "turns": turns,
            "finish": "answer" if valid else "parse_error",
        }
        for i, p in preds.items()
    ]


def test_results_and_report(tmp_path):
    examples = {
        "hotpotqa": [_ex(0, "Paris"), _ex(1, "yes", "comparison"), _ex(2, "Lothair II")],
        "mq": [_ex(3, "1990", "2hop", "musique")],
    }
    cells = {
        ("base", "direct", "hotpotqa"): _records("direct", {"q0": "Paris", "q1": "no"}, valid=False),
        ("base", "direct", "mq"): _records("direct", {"q3": "in 1990"}),
        ("base", "tools/grounded", "hotpotqa"): _records(
            "tools", {"q0": "paris", "q1": "yes", "q2": "Lothair"}, 4, 1, True, 3
        ),
        ("base", "tools/grounded", "mq"): [],
    }
    results = build_results(
        ["base"],
        ["direct", "tools/grounded"],
        examples,
        lambda m, o, b: cells[m, o, b],
        {"hotpotqa": "hotpotqa", "mq": "musique"},
    )
    d = find_cell(results, "base", "direct", "hotpotqa")
    assert (d["n"], d["missing"]) == (3, 1)
    assert d["em"] == pytest.approx(1 / 3) and d["f1"] == pytest.approx(1 / 3)
    assert d["by_type"]["comparison"] == {"n": 1, "em": 0.0, "f1": 0.0}
    assert d["format_valid_rate"] == 0.0 and d["finish"] == {"parse_error": 2}
    t = find_cell(results, "base", "tools/grounded", "hotpotqa")
    assert t["em"] == pytest.approx(2 / 3) and t["f1"] == pytest.approx((1 + 1 + 2 / 3) / 3)
    assert (t["mean_tool_calls"], t["invalid_call_rate"], t["mean_turns"]) == (4.0, 0.25, 3.0)
    # The label "mq" is scored under the MuSiQue convention: "in 1990" vs "1990" is EM 0, F1 2/3.
    m = find_cell(results, "base", "direct", "mq")
    assert m["em"] == 0.0 and m["f1"] == pytest.approx(2 / 3)
    assert find_cell(results, "base", "tools/grounded", "mq")["missing"] == 1
    assert results["conventions"] == {"hotpotqa": "hotpotqa", "mq": "musique"}
    md = render_report(results)
    assert "| base | direct | 33.3 / 33.3 | 0.0 / 66.7 |" in md
    assert "| base | tools/grounded | 100.0 | 3.00 | 4.00 | 25.0 |" in md
    assert "| base | direct | 33.3 | 1.00 | 0.00 | - |" in md
    assert "## hotpotqa by question type" in md and "(n=2)" in md
    assert "Simulation gap" not in md  # one tool environment: nothing to compare
    assert json.loads(json.dumps(results)) == results

    png = plot_scores(results, tmp_path / "scores.png")
    assert png.read_bytes().startswith(PNG_MAGIC)
    import matplotlib.image

    assert matplotlib.image.imread(png).ndim == 3


def test_simulation_gap_table_puts_environments_side_by_side():
    examples = {"hotpotqa": [_ex(0, "Paris"), _ex(1, "yes", "comparison")], "mq": [_ex(3, "1990", "2hop")]}
    answers = {
        "tools/grounded": ({"q0": "Paris", "q1": "yes"}, {"q3": "1990"}),
        "tools/llm": ({"q0": "Paris", "q1": "no"}, {"q3": "1990"}),
        "tools/retrieval": ({"q0": "Rome", "q1": "no"}, {"q3": "1990"}),
    }
    cells = {
        ("m", env, bench): _records("tools", preds)
        for env, (hq, mq) in answers.items()
        for bench, preds in (("hotpotqa", hq), ("mq", mq))
    }
    conventions = {"hotpotqa": "hotpotqa", "mq": "musique"}
    results = build_results(["m"], list(answers), examples, lambda m, o, b: cells[m, o, b], conventions)
    md = render_report(results)
    assert "## Simulation gap" in md
    assert (
        "| model | benchmark | grounded EM | llm EM | retrieval EM | grounded − retrieval [95% CI] "
        "| llm − retrieval [95% CI] |" in md
    )
    # Every question differs the same way in a benchmark: the interval is the point.
    assert "| m | hotpotqa | 100.0 | 50.0 | 0.0 | +100.0 [+100.0, +100.0] | +50.0 [+0.0, +100.0] |" in md
    assert "| m | mq | 100.0 | 100.0 | 100.0 | +0.0 [+0.0, +0.0] | +0.0 [+0.0, +0.0] |" in md
    assert "| m | **mean** | 100.0 | 75.0 | 50.0 | +50.0 [+50.0, +50.0] | +25.0 [+0.0, +50.0] |" in md
    without_retrieval = build_results(
        ["m"], list(answers)[:2], examples, lambda m, o, b: cells[m, o, b], conventions
    )
    assert "| m | hotpotqa | 100.0 | 50.0 | -50.0 [-100.0, +0.0] |" in render_report(without_retrieval)
    assert "Retrieval corpus coverage" not in md
    # The corpus's coverage of each benchmark's evidence pages is said beside the table.
    covered = build_results(
        ["m"],
        list(answers),
        examples,
        lambda m, o, b: cells[m, o, b],
        conventions,
        meta={"retrieval_corpus": {"path": "c", "pages": 3, "coverage": {"hotpotqa": 1.0, "mq": 0.0}}},
    )
    assert (
        "**Retrieval corpus coverage** (questions whose evidence pages it holds): hotpotqa 100.0%, mq 0.0%. "
        "Real retrieval cannot show mq the pages that answer them." in render_report(covered)
    )


def test_corpus_coverage_counts_questions_whose_evidence_pages_the_corpus_holds():
    from mtr_hpc.data import load_sample
    from mtr_hpc.data.splits import select_part
    from mtr_hpc.retrievers import open_retriever
    from mtr_hpc.sim.config import RetrievalEnvConfig
    from mtr_hpc.sim.retrieval_env import corpus_coverage, evidence_pages

    index = open_retriever(RetrievalEnvConfig(corpus="sample"))
    held = {b: select_part(load_sample(b), "heldout") for b in ("hotpotqa", "musique", "2wiki", "bamboogle")}
    coverage = {b: corpus_coverage(exs, index) for b, exs in held.items()}
    # The shipped corpus holds HotpotQA's and 2Wiki's pages, none of MuSiQue's; Bamboogle names none.
    assert coverage == {"hotpotqa": 1.0, "musique": 0.0, "2wiki": 1.0, "bamboogle": 0.0}
    musique = load_sample("musique")[0]
    assert evidence_pages(musique) == ["Green (Steve Hillage album)", "Miquette Giraudy"]
    assert evidence_pages(load_sample("bamboogle")[0]) == []
    # A page the corpus lacks uncovers its question.
    twowiki = held["2wiki"][0]

    class Without:
        def find_page(self, title):
            return None if title == evidence_pages(twowiki)[0] else index.find_page(title)

    assert corpus_coverage([twowiki], Without()) == 0.0 and corpus_coverage([twowiki], index) == 1.0


def test_training_curves(tmp_path):
    sft, grpo, empty = tmp_path / "sft", tmp_path / "grpo", tmp_path / "none"
    for d in (sft, grpo, empty):
        d.mkdir()
    (sft / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "sft/loss": 2 / s, "sft/lr": 1e-3}) + "\n" for s in (1, 2, 3))
    )
    grpo_recs = [
        {"step": s, "grpo/reward/correct": s / 10, "grpo/reward/consist": 0.5, "grpo/kl": 0.01 * s}
        for s in (1, 2)
    ]
    (grpo / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in grpo_recs) + '{"step": 3, "gr')
    (empty / "metrics.jsonl").write_text(json.dumps({"step": 1, "synth/n": 3}) + "\n")
    from mtr_hpc.tracking import read_metrics

    assert curve_keys([read_metrics(sft), read_metrics(grpo)]) == [
        "sft/loss",
        "grpo/kl",
        "grpo/reward/consist",
        "grpo/reward/correct",
    ]
    out = plot_training_curves([sft, grpo], tmp_path / "curves.png")
    assert out is not None and out.read_bytes().startswith(PNG_MAGIC)
    assert plot_training_curves([empty], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_validate_config():
    def cfg(**kw):
        base = {"models": [ModelSpec("a", "smollm2-135m")], "benchmarks": [BenchmarkSpec("hotpotqa")]}
        return EvalConfig(**{**base, **kw})

    assert validate_config(cfg()).envs == ["grounded"]
    assert settings(cfg(envs=["grounded", "retrieval"])) == [
        ("direct", ""),
        ("tools", "grounded"),
        ("tools", "retrieval"),
    ]
    bad = [
        (dict(models=[]), "models"),
        (dict(models=[ModelSpec("a", "x"), ModelSpec("a", "y")]), r"models\[1\]"),
        (dict(models=[ModelSpec("a/b", "x")]), r"models\[0\].name"),
        (dict(modes=["direct", "react"]), r"modes\[1\]"),
        (dict(envs=["grounded", "llm"], llm=LLMConfig(backend="openai")), "llm.base_url"),
        (dict(envs=[]), "envs"),
        (dict(envs=["grounded", "web"]), r"envs\[1\]"),
        (dict(envs=["grounded", "grounded"]), r"envs\[1\]"),
        (dict(batch_size=0), "batch_size"),
        (dict(benchmarks=[BenchmarkSpec("hotpotqa", limit=-1)]), r"benchmarks\[0\].limit"),
    ]
    for kw, key in bad:
        with pytest.raises(ConfigError, match=key):
            validate_config(cfg(**kw))
    # The retrieval environment's own checks run as its config loads.
    with pytest.raises(ConfigError, match="retrieval.corpus"):
        RetrievalEnvConfig(corpus="")
    with pytest.raises(ConfigError, match="retrieval.url"):
        RetrievalEnvConfig(backend="http")
    # A direct-only run needs no environment.
    assert validate_config(cfg(envs=["llm"], modes=["direct"]))


def test_models_are_compared_pairwise_with_paired_intervals():
    examples = {"hotpotqa": [_ex(i, "Paris") for i in range(4)]}
    preds = {
        "base": {"q0": "Rome", "q1": "Rome", "q2": "Rome", "q3": "Rome"},
        "sft": {"q0": "Paris", "q1": "Paris", "q2": "Rome", "q3": "Rome"},
        "grpo": {"q0": "Paris", "q1": "Paris", "q2": "Paris", "q3": "Paris"},
    }
    results = build_results(list(preds), ["direct"], examples, lambda m, o, b: _records("direct", preds[m]))
    assert find_cell(results, "sft", "direct", "hotpotqa")["em_per_question"] == [1.0, 1.0, 0.0, 0.0]
    md = render_report(results)
    assert "## Models compared" in md
    assert "| grpo − base | direct | +100.0 [+100.0, +100.0] | +100.0 [+100.0, +100.0] |" in md
    row = next(line for line in md.splitlines() if line.startswith("| sft − base | direct |"))
    mean, interval = row.split(" | ")[2].split(" [")
    assert mean == "+50.0" and interval.startswith("+0.0, ") and interval.endswith("+100.0]")
    assert "| grpo − sft | direct |" in md
