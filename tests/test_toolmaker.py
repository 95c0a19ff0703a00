"""ToolMaker: classification, tool interfaces, the persistent deduplicated library, the llm backend."""

from __future__ import annotations

import asyncio
import json

import pytest

from mtr_hpc.data import QAExample, load_sample
from mtr_hpc.errors import DataError
from mtr_hpc.llm.fake import ScriptedClient
from mtr_hpc.llm.protocol import LLMError
from mtr_hpc.synth import ToolLibrary, ToolMaker, ToolMakerConfig, build_kb, classify_dataset, classify_rules
from mtr_hpc.toolspec import validate_tool, validate_toolset


def _ex(question, answers, qtype=None, evidence=None):
    return QAExample("x", "hotpotqa", question, answers, qtype, evidence or {})


def test_rule_classifier_cues():
    assert classify_rules(_ex("Who was born first, Ann Lee or Bo Chan?", [])).kind == "comparison"
    yn = classify_rules(_ex("Are both Kiss Me Kate and Cats musicals?", []))
    assert yn.kind == "comparison" and yn.yes_no
    choice = classify_rules(_ex("Was Ausaf Ali or Steven Perry born first?", []))
    assert choice.kind == "comparison" and not choice.yes_no
    assert classify_rules(_ex("Who directed the film that won the 1999 award?", [])).kind == "bridge"


def test_dataset_classifier_uses_annotation_then_rules():
    assert classify_dataset(_ex("q?", ["x"], "bridge_comparison")).kind == "bridge_comparison"
    t = classify_dataset(_ex("q?", ["x"], "3hop"))
    assert (t.kind, t.hops, t.source) == ("compositional", 3, "dataset")
    assert classify_dataset(_ex("Which is older, A or B?", ["A"])).source == "rules"


@pytest.mark.parametrize("benchmark", ["musique", "2wiki"])
def test_relation_tools_valid_and_shared(benchmark):
    maker = ToolMaker()
    examples = load_sample(benchmark)
    names_by_relation: dict[str, str] = {}
    for ex in examples:
        toolset = maker.make(ex, build_kb(ex))
        assert validate_toolset(toolset.tools) == []
        for name, relation in toolset.relation_of.items():
            assert names_by_relation.setdefault(relation, name) == name
    assert len(names_by_relation) >= 5
    report = maker.library.report()
    assert report["unique_tools"] == len(maker.library)
    assert report["total_uses"] == sum(e.count for e in maker.library.entries.values())
    assert sum(report["frequency_distribution"].values()) == report["unique_tools"]
    # search/open_page are in every tool set, so their count is the number of examples
    assert maker.library.get("utility:search").count == len(examples)


def test_2wiki_relation_names():
    ex = QAExample(
        "y",
        "2wiki",
        "When did the director of X die?",
        ["1990"],
        "compositional",
        {"triples": [["X", "director", "Y"], ["Y", "date of death", "1990"]]},
    )
    toolset = ToolMaker().make(ex, build_kb(ex))
    assert {"get_director", "get_date_of_death"} <= set(toolset.names())
    death = next(t for t in toolset.tools if t["function"]["name"] == "get_date_of_death")
    assert list(death["function"]["parameters"]["properties"]) == ["person"]
    assert "compare" not in toolset.names()


def test_library_persist_reload_and_merge(tmp_path):
    a, b = ToolMaker(), ToolMaker()
    examples = load_sample("2wiki")
    for ex in examples[:30]:
        a.make(ex, build_kb(ex))
    for ex in examples[30:]:
        b.make(ex, build_kb(ex))
    path = tmp_path / "lib.jsonl"
    a.library.save(path)
    loaded = ToolLibrary.load(path)
    assert {k: e.count for k, e in loaded.entries.items()} == {
        k: e.count for k, e in a.library.entries.items()
    }
    assert all(loaded.get(k).tool == e.tool for k, e in a.library.entries.items())
    merged = ToolLibrary.load(path).merge(b.library)
    for key in set(a.library.entries) | set(b.library.entries):
        want = sum(lib.get(key).count for lib in (a.library, b.library) if key in lib)
        assert merged.get(key).count == want
    assert not list(tmp_path.glob(".*.tmp"))


def test_library_load_errors_name_the_line(tmp_path):
    path = tmp_path / "lib.jsonl"
    path.write_text('{"key": "relation:x", "tool": {"type": "function"}, "count": 1}\n')
    with pytest.raises(DataError, match="line 1.*tool"):
        ToolLibrary.load(path)


def _llm_interface(name="find_director"):
    return json.dumps(
        {
            "name": name,
            "description": "Find who directed a film.",
            "parameters": {
                "type": "object",
                "properties": {"film": {"type": "string", "description": "Film title."}},
                "required": ["film"],
            },
            "returns": {"type": "object", "properties": {"director": {"type": ["string", "null"]}}},
        }
    )


def test_llm_backend_accepts_valid_interface_and_reuses_it():
    client = ScriptedClient([_llm_interface()])
    maker = ToolMaker(ToolMakerConfig(backend="llm"), llm=client)
    ex = QAExample(
        "z", "2wiki", "Who directed X?", ["Y"], "compositional", {"triples": [["X", "director", "Y"]]}
    )
    toolset = asyncio.run(maker.amake(ex, build_kb(ex)))
    tool = next(t for t in toolset.tools if t["function"]["name"] == "find_director")
    assert validate_tool(tool) == []
    assert client.requests[0].json_schema is not None
    again = asyncio.run(maker.amake(ex, build_kb(ex)))
    assert "find_director" in again.names() and len(client.requests) == 1
    assert maker.library.get("relation:director").origin == "llm"


def test_llm_backend_invalid_output_retries_then_falls_back():
    bad = [
        "not json",
        json.dumps({"name": "bad name!", "description": "d", "parameters": {}, "returns": {}}),
        LLMError("timeout", "slow", retryable=True),
    ]
    client = ScriptedClient(bad)
    maker = ToolMaker(ToolMakerConfig(backend="llm", llm_retries=2), llm=client)
    ex = QAExample(
        "z", "2wiki", "Who directed X?", ["Y"], "compositional", {"triples": [["X", "director", "Y"]]}
    )
    toolset = asyncio.run(maker.amake(ex, build_kb(ex)))
    assert "get_director" in toolset.names()
    assert maker.stats["llm_fallback"] == 1
    assert maker.stats["llm_invalid:not_json"] == 1 and maker.stats["llm_error"] == 1
    assert maker.library.get("relation:director").origin == "template"
