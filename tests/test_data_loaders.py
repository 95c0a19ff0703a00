"""Benchmark loaders: every real file, the shipped samples, JSONL/hub variants, and every bad-input case."""

from __future__ import annotations

import functools
import json
import sys
import types
from collections import Counter
from pathlib import Path

import pytest

from mtr_hpc.data import (
    BENCHMARKS,
    BenchmarkError,
    QAExample,
    canonical_benchmark,
    load_benchmark,
    load_corpus,
    load_sample,
    sample_corpus_path,
    sample_path,
)
from mtr_hpc.data.source import is_hub_source
from mtr_hpc.data.splits import select_part
from mtr_hpc.errors import DataError, MtrError

# (benchmark, file under the shared data dir, records per the data README, detected format)
SHARED_FILES = [
    ("hotpotqa", "hotpotqa/hotpot_dev_distractor_first100.json", 100, "hotpotqa/json"),
    ("hotpotqa", "hotpotqa/hotpot_dev_fullwiki_500subset.jsonl", 500, "hotpotqa/jsonl"),
    ("hotpotqa", "hotpotqa/hotpot_dev_qa_full.json", 7405, "hotpotqa/json"),
    ("musique", "musique/musique_ans_v1.0_dev_noparagraphs.json", 2417, "musique/json"),
    ("2wiki", "2wikimultihopqa/2wiki_dev_qa_full.json", 12576, "2wiki/json"),
    ("2wiki", "2wikimultihopqa/2wiki_dev_4000subset_evidences.json", 4000, "2wiki/json"),
    ("bamboogle", "bamboogle/bamboogle_with_decomp.json", 125, "bamboogle/json"),
    ("bamboogle", "bamboogle/bamboogle_test.jsonl", 125, "flashrag/jsonl"),
]


@functools.cache
def _load(root: Path, benchmark: str, rel: str):
    return load_benchmark(benchmark, root / rel)


def _examples(shared_data: Path, benchmark: str, rel: str) -> dict[str, QAExample]:
    return {e.id: e for e in _load(shared_data, benchmark, rel).examples}


def _write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _write_json(path: Path, records) -> Path:
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


# ---------------------------------------------------------------- real files


@pytest.mark.parametrize(("benchmark", "rel", "count", "fmt"), SHARED_FILES)
def test_every_shared_file_loads_with_its_count(shared_data, benchmark, rel, count, fmt):
    res = _load(shared_data, benchmark, rel)
    assert len(res.examples) == count and res.skipped == []
    assert res.format == fmt and res.path == str(shared_data / rel)
    assert {e.benchmark for e in res.examples} == {benchmark}
    assert len({e.id for e in res.examples}) == count
    assert all(isinstance(a, str) for e in res.examples for a in e.answers)


def test_hotpotqa_distractor_record(shared_data):
    ex = _examples(shared_data, "hotpotqa", "hotpotqa/hotpot_dev_distractor_first100.json")["SYNTH_dev_0"]
    assert ex.question == "Were Scott Derrickson and Ed Wood of the same nationality?"
    assert ex.answers == ["yes"] and ex.qtype == "comparison" and ex.evidence["level"] == "hard"
    assert ex.evidence["supporting_facts"] == [["Scott Derrickson", 0], ["Ed Wood", 0]]
    paras = ex.evidence["paragraphs"]
    assert len(paras) == 10 and paras[0]["title"] == "Ed Wood (film)"
    assert [p["title"] for p in paras if p["is_supporting"]] == ["Scott Derrickson", "Ed Wood"]
    scott = paras[1]
    assert scott["sentences"][1] == " He lives in Los Angeles, California."
    assert scott["text"].startswith("Scott Derrickson (born July 16, 1966) is an American director, ")
    assert "producer. He lives in Los Angeles" in scott["text"]


def test_hotpotqa_fullwiki_and_qa_only_records(shared_data):
    full = _examples(shared_data, "hotpotqa", "hotpotqa/hotpot_dev_fullwiki_500subset.jsonl")
    ex = full["5a7166395542994082a3e814"]
    assert ex.answers == ["Kansas Song"] and ex.qtype == "bridge"
    assert ex.evidence["supporting_facts"][1] == ["University of Kansas", 1]
    assert Counter(e.qtype for e in full.values()) == {"bridge": 371, "comparison": 129}
    qa = _examples(shared_data, "hotpotqa", "hotpotqa/hotpot_dev_qa_full.json")
    assert qa["hotpotqa-0"].answers == ["yes"] and qa["hotpotqa-0"].qtype == "comparison"
    assert "hotpotqa-7404" in qa and qa["hotpotqa-0"].evidence == {}


def test_musique_records(shared_data):
    exs = _examples(shared_data, "musique", "musique/musique_ans_v1.0_dev_noparagraphs.json")
    ex = exs["2hop__460946_294723"]
    assert ex.qtype == "2hop" and ex.answers == ["Miquette Giraudy"] and ex.evidence["answerable"] is True
    first = ex.evidence["decomposition"][0]
    assert (first["question"], first["answer"], first["paragraph_support_idx"]) == (
        "Green >> performer",
        "Steve Hillage",
        10,
    )
    assert "paragraphs" not in ex.evidence
    ex = exs["3hop1__248929_160713_77246"]
    assert ex.qtype == "3hop" and len(ex.evidence["decomposition"]) == 3
    assert ex.answers == ["the country of India", "IND", "IN", "India", "in", "Republic of India"]
    assert Counter(e.qtype for e in exs.values()) == {"2hop": 1252, "3hop": 760, "4hop": 405}


def test_2wiki_records(shared_data):
    exs = _examples(shared_data, "2wiki", "2wikimultihopqa/2wiki_dev_4000subset_evidences.json")
    ex = exs["e93c07e8084f11ebbd56ac1f6bf848b6"]
    assert ex.qtype == "bridge_comparison" and ex.answers == ["What Price Hollywood?"]
    assert ex.evidence["triples"][2] == ["Roy Del Ruth", "date of death", "April 27, 1961"]
    assert ex.evidence["answer_id"] == "Q2031960" and len(ex.evidence["supporting_facts"]) == 4
    no_answer_id = exs["73d390860bdb11eba7f7acde48001122"]
    assert "answer_id" not in no_answer_id.evidence and no_answer_id.qtype == "compositional"
    assert Counter(e.qtype for e in exs.values())["inference"] == 475
    qa = _examples(shared_data, "2wiki", "2wikimultihopqa/2wiki_dev_qa_full.json")
    assert qa["2wiki-0"].answers == ["Małgorzata Braunek"] and qa["2wiki-0"].qtype is None


def test_bamboogle_records(shared_data):
    exs = _examples(shared_data, "bamboogle", "bamboogle/bamboogle_with_decomp.json")
    ex = exs["bamboogle-1"]
    assert ex.answers == ["Titan IIIE"] and ex.qtype == "2hop"
    steps = ex.evidence["decomposition"]
    assert [s["question"] for s in steps] == [
        "What was the first spacecraft that ever approached Uranus?",
        "What rocket was Voyager 2 launched on?",
    ]
    assert steps[0]["answer"] == "voyager 2" and steps[1]["answers"] == ["titan iiie-centaur", "titan iiie"]
    flash = _examples(shared_data, "bamboogle", "bamboogle/bamboogle_test.jsonl")
    assert flash["test_0"].answers == ["james madison"] and flash["test_0"].qtype == "2hop"
    assert flash["test_0"].question == exs["bamboogle-0"].question


def test_passage_corpus_loads_and_is_refused_as_benchmark(shared_data):
    path = shared_data / "2wikimultihopqa/2wiki_corpus_6119_passages.json"
    corpus = load_corpus(path)
    assert len(corpus.passages) == 6119 and corpus.passages[0].title == "Teutberga"
    with pytest.raises(DataError, match="load_corpus"):
        load_benchmark("2wiki", path)


# ---------------------------------------------------------------- shipped samples


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_each_sample_loads(benchmark, repo_root):
    path = sample_path(benchmark)
    assert path.is_file() and repo_root / "mtr_hpc" / "data" / "samples" == path.parent
    examples = load_sample(benchmark)
    expected = {"hotpotqa": 248, "musique": 164, "2wiki": 164, "bamboogle": 125}[benchmark]
    assert len(examples) == expected and all(e.benchmark == benchmark for e in examples)
    qtypes = Counter(e.qtype for e in examples)
    expected_types = {
        "hotpotqa": {"bridge": 194, "comparison": 54},
        "musique": {"2hop": 56, "3hop": 54, "4hop": 54},
        "2wiki": {"comparison": 41, "inference": 41, "compositional": 41, "bridge_comparison": 41},
        "bamboogle": {"2hop": 125},
    }[benchmark]
    assert qtypes == expected_types
    # Held-out questions enough for an interval (HotpotQA: every one whose pages the sources hold).
    held = select_part(examples, "heldout")
    assert len(held) == {"hotpotqa": 57, "musique": 64, "2wiki": 64, "bamboogle": 33}[benchmark]
    assert len({e.question for e in examples}) == len(examples)  # no question on both sides of the split
    evidence_key = {"hotpotqa": "paragraphs", "musique": "decomposition", "2wiki": "triples"}
    assert all(evidence_key.get(benchmark, "decomposition") in e.evidence for e in examples)


def test_samples_are_small_and_reproducible(shared_data, repo_root, tmp_path):
    sys.path.insert(0, str(repo_root / "tools"))
    try:
        import make_samples
    finally:
        sys.path.remove(str(repo_root / "tools"))
    sizes = make_samples.make_samples(shared_data, tmp_path)
    assert sum(sizes.values()) < 4_000_000
    for shipped in [*(sample_path(b) for b in BENCHMARKS), sample_corpus_path()]:
        assert (tmp_path / shipped.name).read_bytes() == shipped.read_bytes(), shipped.name
    readme = (repo_root / "mtr_hpc/data/samples/README.md").read_text()
    assert all(lic in readme for lic in ("CC BY-SA 4.0", "CC BY 4.0", "Apache 2.0"))


def test_shipped_corpus_holds_the_supporting_pages_of_2wiki_and_hotpotqa():
    corpus = load_corpus(sample_corpus_path())
    assert corpus.format == "corpus/jsonl" and len(corpus.passages) == 8549
    titles = {p.title for p in corpus.passages}
    assert len(titles) == len(corpus.passages)
    for bench in ("2wiki", "hotpotqa"):
        for ex in load_sample(bench):
            missing = [t for t, _ in ex.evidence["supporting_facts"] if t not in titles]
            assert not missing, (bench, ex.id, missing)


def test_gzipped_corpus_reads_like_plain_and_a_broken_one_is_a_data_error(tmp_path):
    import gzip

    lines = [json.dumps({"title": f"T{i}", "text": f"Sentence {i}."}) for i in range(3)]
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "c.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    plain, packed = load_corpus(tmp_path / "c.jsonl"), load_corpus(tmp_path / "c.jsonl.gz")
    assert packed.passages == plain.passages and len(packed.passages) == 3
    (tmp_path / "cut.jsonl.gz").write_bytes((tmp_path / "c.jsonl.gz").read_bytes()[:20])
    with pytest.raises(DataError, match="cut.jsonl.gz.*gzip"):
        load_corpus(tmp_path / "cut.jsonl.gz")


# ---------------------------------------------------------------- other layouts


def test_hotpotqa_jsonl_equals_json(shared_data, tmp_path):
    records = json.loads((shared_data / "hotpotqa/hotpot_dev_distractor_first100.json").read_text())[:3]
    res = load_benchmark("hotpot", _write_jsonl(tmp_path / "h.jsonl", records))
    from_json = load_benchmark("hotpotqa", _write_json(tmp_path / "h.json", records))
    assert res.format == "hotpotqa/jsonl" and from_json.format == "hotpotqa/json"
    assert [e.to_dict() for e in res.examples] == [e.to_dict() for e in from_json.examples]


MUSIQUE_WITH_PARAGRAPHS = {
    "id": "4hop3__1_2_3_4",
    "question": "Who founded the city where the band formed?",
    "answer": "Romulus",
    "answer_aliases": ["Romulus", "Romolo"],
    "answerable": True,
    "paragraphs": [
        {"idx": 0, "title": "Rome", "paragraph_text": "Rome was founded by Romulus.", "is_supporting": True},
        {"idx": 1, "title": "Paris", "paragraph_text": "Paris is in France.", "is_supporting": False},
    ],
    "question_decomposition": [
        {"id": 1, "question": "band >> formed in", "answer": "Rome", "paragraph_support_idx": None},
        {"id": 2, "question": "who founded #1", "answer": "Romulus", "paragraph_support_idx": 0},
    ],
}


def test_musique_jsonl_with_paragraphs(tmp_path):
    res = load_benchmark("musique", _write_jsonl(tmp_path / "m.jsonl", [MUSIQUE_WITH_PARAGRAPHS]))
    (ex,) = res.examples
    assert res.format == "musique/jsonl" and ex.qtype == "4hop"
    assert ex.answers == ["Romulus", "Romolo"]  # the alias repeating the gold answer is dropped
    assert ex.evidence["paragraphs"][0] == {
        "title": "Rome",
        "text": "Rome was founded by Romulus.",
        "is_supporting": True,
        "idx": 0,
    }
    assert ex.evidence["decomposition"][1]["paragraph_support_idx"] == 0


def test_2wiki_official_record_with_context(tmp_path):
    rec = {
        "_id": "abc",
        "type": "inference",
        "question": "Who is the paternal grandfather of X?",
        "context": [
            ["X", ["X is a prince.", "His father is Y."]],
            ["Y", ["Y is the son of Z."]],
            ["W", ["W."]],
        ],
        "supporting_facts": [["X", 1], ["Y", 0]],
        "evidences": [["X", "father", "Y"], ["Y", "father", "Z"]],
        "answer": "Z",
    }
    (ex,) = load_benchmark("2wikimultihopqa", _write_jsonl(tmp_path / "w.jsonl", [rec])).examples
    assert ex.id == "abc" and ex.qtype == "inference" and ex.benchmark == "2wiki"
    assert ex.evidence["paragraphs"][0]["text"] == "X is a prince. His father is Y."
    assert [p["is_supporting"] for p in ex.evidence["paragraphs"]] == [True, True, False]
    assert ex.evidence["triples"] == [["X", "father", "Y"], ["Y", "father", "Z"]]


def test_hf_column_layout_and_flashrag_metadata(tmp_path):
    hf = {
        "id": "5a8b",
        "question": "Q?",
        "answer": "A",
        "type": "bridge",
        "level": "easy",
        "supporting_facts": {"title": ["T1"], "sent_id": [0]},
        "context": {"title": ["T1", "T2"], "sentences": [["s1.", " s2."], ["u1."]]},
    }
    (ex,) = load_benchmark("hotpotqa", _write_jsonl(tmp_path / "hf.jsonl", [hf])).examples
    assert ex.evidence["supporting_facts"] == [["T1", 0]]
    assert ex.evidence["paragraphs"][0] == {
        "title": "T1",
        "text": "s1. s2.",
        "sentences": ["s1.", " s2."],
        "is_supporting": True,
    }
    flash = {"id": "f1", "question": "Q?", "golden_answers": ["A", "a", "A"], "metadata": hf}
    res = load_benchmark("hotpotqa", _write_jsonl(tmp_path / "fr.jsonl", [flash]))
    assert res.format == "flashrag/jsonl"
    assert res.examples[0].answers == ["A", "a"] and res.examples[0].qtype == "bridge"
    assert res.examples[0].evidence["paragraphs"] == ex.evidence["paragraphs"]
    bad = dict(flash, metadata=dict(hf, context=5))
    with pytest.raises(DataError) as info:
        load_benchmark("hotpotqa", _write_jsonl(tmp_path / "bad.jsonl", [bad]))
    assert info.value.field == "metadata.context"
    mus = {"id": "3hop2__1_2_3", "question": "Q?", "golden_answers": ["A"]}
    (ex,) = load_benchmark("musique", _write_jsonl(tmp_path / "fm.jsonl", [mus])).examples
    assert ex.qtype == "3hop" and ex.evidence == {}


# ---------------------------------------------------------------- bad input


def _hotpot(i: int, **changes) -> dict:
    rec = {
        "_id": f"id{i}",
        "question": f"Question {i}?",
        "answer": "yes",
        "type": "comparison",
        "level": "hard",
        "supporting_facts": [["T", 0]],
        "context": [["T", ["Sentence."]]],
    }
    rec.update(changes)
    return {k: v for k, v in rec.items() if v is not _DROP}


_DROP = object()

BAD_RECORDS = [
    ({"question": 7}, "question", "must be a string"),
    ({"context": "T: Sentence."}, "context", "must be an array"),
    ({"context": [["T", "Sentence."]]}, "context[0][1]", "must be an array"),
    ({"answer": _DROP}, "answer", "is missing"),
    ({"answer": 1961}, "answer", "must be a string, got int"),
    ({"supporting_facts": [["T", "0"]]}, "supporting_facts[0][1]", "must be an integer"),
    ({"type": ["bridge"]}, "type", "must be a string"),
]


@pytest.mark.parametrize(("change", "field", "message"), BAD_RECORDS)
def test_bad_field_in_json_array_names_record_and_field(tmp_path, change, field, message):
    path = _write_json(tmp_path / "bad.json", [_hotpot(0), _hotpot(1, **change), _hotpot(2)])
    with pytest.raises(DataError) as info:
        load_benchmark("hotpotqa", path)
    err = info.value
    assert (err.path, err.where, err.field) == (str(path), "record 1", field)
    assert message in str(err) and "record 1" in str(err) and str(path) in str(err)
    res = load_benchmark("hotpotqa", path, skip_bad=True)
    assert [e.id for e in res.examples] == ["id0", "id2"]
    assert res.n_skipped == 1 and res.skipped[0].field == field


def test_bad_jsonl_lines_name_the_line_and_can_be_skipped(tmp_path):
    lines = [
        json.dumps(_hotpot(0)),
        "",
        '{"_id": "x", "question": ',  # line 3: truncated JSON
        json.dumps([1, 2]),  # line 4: not an object
        json.dumps(_hotpot(4, question=None)),  # line 5: null question
        json.dumps(_hotpot(0)),  # line 6: duplicate id
        json.dumps(_hotpot(6)),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_benchmark("hotpotqa", path)
    assert info.value.where == "line 3" and "not valid JSON" in str(info.value)
    res = load_benchmark("hotpotqa", path, skip_bad=True)
    assert [e.id for e in res.examples] == ["id0", "id6"]
    assert [(e.where, e.field) for e in res.skipped] == [
        ("line 3", None),
        ("line 4", None),
        ("line 5", "question"),
        ("line 6", "id"),
    ]
    assert "not a JSON object" in str(res.skipped[1]) and "duplicate id 'id0'" in str(res.skipped[3])


def test_ids_fall_back_to_index_in_file_even_past_skipped_records(tmp_path):
    path = _write_jsonl(
        tmp_path / "qa.jsonl",
        [{"question": "a?", "answer": "b"}, {"question": 1}, {"question": "c?", "answer": "d"}],
    )
    res = load_benchmark("2wiki", path, skip_bad=True)
    assert [e.id for e in res.examples] == ["2wiki-0", "2wiki-2"] and res.n_skipped == 1


@pytest.mark.parametrize(
    ("benchmark", "record", "field"),
    [
        ("musique", dict(MUSIQUE_WITH_PARAGRAPHS, answer_aliases=["x", 3]), "answer_aliases[1]"),
        (
            "musique",
            dict(MUSIQUE_WITH_PARAGRAPHS, paragraphs=[{"idx": 0, "title": "T"}]),
            "paragraphs[0].paragraph_text",
        ),
        ("musique", dict(MUSIQUE_WITH_PARAGRAPHS, answerable="yes"), "answerable"),
        ("2wiki", {"question": "q", "answer": "a", "evidences": [["s", "r"]]}, "evidences[0]"),
        ("bamboogle", {"Question": "q", "Answer": "a", "Q1": "q1"}, "A1"),
        ("bamboogle", {"Question": "q", "Answer": "a", "Q1": "q1", "A1": [2]}, "A1[0]"),
        ("bamboogle", {"id": "b", "question": "q", "golden_answers": "a"}, "golden_answers"),
        ("bamboogle", {"id": "b", "question": "q", "golden_answers": []}, "golden_answers"),
        ("hotpotqa", {"_id": {"x": 1}, "question": "q", "answer": "a"}, "_id"),
    ],
)
def test_bad_fields_of_each_layout(tmp_path, benchmark, record, field):
    path = _write_jsonl(tmp_path / "bad.jsonl", [record])
    with pytest.raises(DataError) as info:
        load_benchmark(benchmark, path)
    assert (info.value.where, info.value.field) == ("line 1", field)
    res = load_benchmark(benchmark, path, skip_bad=True)
    assert res.examples == [] and res.n_skipped == 1


@pytest.mark.parametrize(
    "value", [None, 1, 2.5, True, "x", [], {}, [1], [[1, 2]], [["t", [3]]], {"title": 1}]
)
@pytest.mark.parametrize("key", ["_id", "question", "answer", "type", "level", "supporting_facts", "context"])
def test_any_garbage_value_is_a_data_error_never_a_raw_exception(tmp_path, key, value):
    path = _write_jsonl(tmp_path / "g.jsonl", [_hotpot(0, **{key: value})])
    try:
        load_benchmark("hotpotqa", path)
    except DataError as err:
        assert err.where == "line 1" and err.field and err.field.split("[")[0].split(".")[0] == key


def test_unreadable_empty_and_missing_files(tmp_path):
    cases = {
        tmp_path / "empty.json": "",
        tmp_path / "blank.jsonl": "\n  \n",
        tmp_path / "empty_array.json": "[]",
        tmp_path / "latin1.jsonl": None,
        tmp_path / "text.txt": "question,answer\n",
        tmp_path / "broken.json": '[{"question": "q", "answer": "a"},\n {"question": }]',
    }
    for path, text in cases.items():
        if text is None:
            path.write_bytes('{"question": "caf\xe9", "answer": "a"}\n'.encode("latin-1"))
        else:
            path.write_text(text)
    expect = {
        "empty.json": "file is empty",
        "blank.jsonl": "file is empty",
        "empty_array.json": "holds no records",
        "latin1.jsonl": "not UTF-8",
        "text.txt": "neither a JSON array nor JSON lines",
        "broken.json": "not valid JSON",
    }
    for path in cases:
        with pytest.raises(DataError, match=expect[path.name]) as info:
            load_benchmark("hotpotqa", path, skip_bad=True)
        assert info.value.path == str(path)
    with pytest.raises(DataError, match="line 2"):
        load_benchmark("hotpotqa", tmp_path / "broken.json", skip_bad=True)
    with pytest.raises(DataError, match="cannot read file"):
        load_benchmark("hotpotqa", tmp_path)  # a directory
    for missing in (tmp_path / "missing.json", "data/hotpot/dev.json", "dev.jsonl", "nohub"):
        with pytest.raises(DataError, match="file not found"):
            load_benchmark("hotpotqa", missing)


def test_file_of_another_benchmark_is_refused(shared_data):
    with pytest.raises(DataError, match="looks like a musique file"):
        load_benchmark("hotpotqa", shared_data / "musique/musique_ans_v1.0_dev_noparagraphs.json")
    with pytest.raises(DataError, match="looks like a 2wiki file"):
        load_benchmark("musique", shared_data / "2wikimultihopqa/2wiki_dev_4000subset_evidences.json")


def test_benchmark_names_aliases_split_and_limit(shared_data):
    assert (
        canonical_benchmark("2WikiMultiHopQA") == "2wiki" and canonical_benchmark("hotpot_qa") == "hotpotqa"
    )
    with pytest.raises(BenchmarkError) as info:
        load_benchmark("triviaqa", shared_data / "bamboogle/bamboogle_test.jsonl")
    assert isinstance(info.value, MtrError) and all(b in str(info.value) for b in BENCHMARKS)
    with pytest.raises(BenchmarkError):
        sample_path("nq")
    path = shared_data / "bamboogle/bamboogle_test.jsonl"
    assert [e.id for e in load_benchmark("bamboogle", path, limit=3).examples] == [
        "test_0",
        "test_1",
        "test_2",
    ]
    with pytest.raises(DataError) as info:
        load_benchmark("bamboogle", path, split="test")
    assert info.value.field == "split"
    with pytest.raises(MtrError, match="limit"):
        load_benchmark("bamboogle", path, limit=-1)


# ---------------------------------------------------------------- hub (a stand-in for `datasets`)


def test_hub_sources_are_told_from_local_paths(tmp_path):
    assert is_hub_source("hf://hotpotqa/hotpot_qa") and is_hub_source("dgslibisey/MuSiQue")
    assert not is_hub_source("data/dev.json") and not is_hub_source(tmp_path / "a/b")
    assert not is_hub_source("a/b/c") and not is_hub_source("dev.jsonl")


def test_hub_records_go_through_the_same_converters(monkeypatch):
    calls = []
    hf_record = {
        "id": "5a8b57f25542995d1e6f1371",
        "question": "Were Scott Derrickson and Ed Wood of the same nationality?",
        "answer": "yes",
        "type": "comparison",
        "level": "hard",
        "supporting_facts": {"title": ["Scott Derrickson", "Ed Wood"], "sent_id": [0, 0]},
        "context": {"title": ["Ed Wood", "Scott Derrickson"], "sentences": [["Ed Wood was."], ["Scott is."]]},
    }

    def load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        if name == "broken/name":
            raise ConnectionError("no network")
        if split is None:
            return {"train": [], "validation": [hf_record]}
        return [hf_record, dict(hf_record, id="other", question=3)]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    res = load_benchmark("hotpotqa", "hf://hotpotqa/hotpot_qa:distractor", split="validation", skip_bad=True)
    assert calls == [("hotpotqa/hotpot_qa", "distractor", "validation")]
    assert res.format == "hotpotqa/hub" and res.path == "hf://hotpotqa/hotpot_qa:distractor [validation]"
    (ex,) = res.examples
    assert ex.id == "5a8b57f25542995d1e6f1371" and ex.qtype == "comparison"
    assert [p["is_supporting"] for p in ex.evidence["paragraphs"]] == [True, True]
    assert res.skipped[0].where == "record 1" and res.skipped[0].field == "question"
    res = load_benchmark("hotpotqa", "hotpotqa/hotpot_qa")
    assert calls[-1] == ("hotpotqa/hotpot_qa", None, None) and "[validation]" in res.path
    with pytest.raises(DataError, match="cannot load from the hub: no network"):
        load_benchmark("hotpotqa", "hf://broken/name", split="validation")
