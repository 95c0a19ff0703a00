"""Tool interface validation, argument/observation checks and the registry."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from mtr_hpc.toolspec import (
    ToolRegistry,
    ToolSpecError,
    openai_view,
    validate_arguments,
    validate_observation,
    validate_tool,
    validate_toolset,
)
from mtr_hpc.toolspec.schemas import compiled_validator

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture()
def tools() -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / "tools_valid.jsonl").read_text().splitlines()]


@pytest.fixture()
def search(tools) -> dict:
    return copy.deepcopy(tools[0])


def codes(issues) -> set[str]:
    return {i.code for i in issues}


def test_fixture_tools_are_valid(tools):
    assert validate_toolset(tools) == []
    for tool in tools:
        assert validate_tool(tool) == []


def test_openai_view_drops_only_x_returns(search):
    view = openai_view(search)
    assert "x-returns" not in view
    assert view["function"] == search["function"] and view["type"] == "function"
    assert "x-returns" in search  # the original is untouched


@pytest.mark.parametrize("name", ["has space", "", "x" * 65, "dot.name", "ünï", 7, None])
def test_bad_names(search, name):
    search["function"]["name"] = name
    assert "bad_name" in codes(validate_tool(search))


def test_name_of_64_allowed_chars_is_valid(search):
    search["function"]["name"] = "a-Z_9" * 12 + "abcd"
    assert validate_tool(search) == []


def test_missing_descriptions(search):
    search["function"]["description"] = "  "
    del search["function"]["parameters"]["properties"]["k"]["description"]
    issues = validate_tool(search)
    paths = {i.path for i in issues if i.code == "missing_description"}
    assert paths == {"function.description", "function.parameters.properties.k.description"}


def test_schema_not_valid_against_metaschema(search):
    search["function"]["parameters"]["properties"]["query"]["type"] = "strng"
    search["x-returns"]["required"] = "results"
    issues = [i for i in validate_tool(search) if i.code == "bad_schema"]
    assert {i.path.split(".")[0] for i in issues} == {"function", "x-returns"}
    assert any("properties.query.type" in i.path for i in issues)


def test_schemas_must_describe_objects(search):
    search["function"]["parameters"] = {"type": "array", "items": {"type": "string"}}
    search["x-returns"] = {"type": "string"}
    paths = {i.path for i in validate_tool(search) if i.code == "not_object_schema"}
    assert paths == {"function.parameters.type", "x-returns.type"}


def test_required_not_in_properties(search):
    search["function"]["parameters"]["required"] = ["query", "lang"]
    search["x-returns"]["required"] = ["results", "total"]
    msgs = [i.message for i in validate_tool(search) if i.code == "required_not_in_properties"]
    assert len(msgs) == 2 and "'lang'" in msgs[0] and "'total'" in msgs[1]


def test_unknown_keys_and_missing_parts(search):
    search["extra"] = 1
    search["function"]["examples"] = []
    del search["x-returns"]
    issues = validate_tool(search)
    assert {i.path for i in issues if i.code == "unknown_key"} == {"extra", "function.examples"}
    assert [i.path for i in issues if i.code == "missing_field"] == ["x-returns"]
    assert codes(validate_tool({"type": "function"})) == {"missing_field"}
    assert codes(validate_tool({"type": "tool", "function": {}, "x-returns": {}})) >= {
        "bad_type",
        "missing_field",
        "missing_description",
        "not_object_schema",
    }


def test_not_an_object_never_raises():
    for bad in (None, 3, "tool", [], {"function": "x"}, {"type": "function", "function": {"parameters": 5}}):
        assert validate_tool(bad), bad


def test_duplicate_names_in_a_set(tools):
    issues = validate_toolset([*tools, copy.deepcopy(tools[1])])
    assert [(i.code, i.path) for i in issues] == [("duplicate_name", f"[{len(tools)}].function.name")]
    assert codes(validate_toolset("nope")) == {"not_list"}


def test_arguments_against_parameters(search):
    assert validate_arguments(search, {"query": "Shirley Temple", "k": 3}) == []
    assert any("'query' is a required property" in e for e in validate_arguments(search, {"k": 3}))
    assert any(e.startswith("k:") for e in validate_arguments(search, {"query": "q", "k": "three"}))
    assert any(e.startswith("k:") for e in validate_arguments(search, {"query": "q", "k": 11}))
    assert validate_arguments(search, {"query": "q", "lang": "en"})  # additionalProperties: false
    assert validate_arguments(search, ["query"]) == ["arguments must be a JSON object, got list"]


def test_observation_against_x_returns(search):
    assert validate_observation(search, {"results": [{"title": "A", "snippet": "b"}]}) == []
    assert validate_observation(search, {"results": [{"title": "A"}]})
    assert validate_observation(search, "plain text")
    search["x-returns"] = {"type": "object", "properties": {"a": {"type": "nope"}}}
    assert validate_observation(search, {}) == ["the tool's x-returns schema is not a valid JSON Schema"]


def test_validators_are_cached_by_content(search):
    schema = search["function"]["parameters"]
    assert compiled_validator(schema) is compiled_validator(copy.deepcopy(schema))
    assert compiled_validator(schema) is not compiled_validator(search["x-returns"])
    assert compiled_validator({"type": "bogus"}) is None


def test_registry_lookup_and_validation(tools):
    reg = ToolRegistry(tools)
    assert reg.ok and len(reg) == 4 and reg.names[0] == "search_wikipedia"
    assert "open_page" in reg and "nope" not in reg and reg.get("nope") is None
    assert reg["open_page"] is tools[1]
    assert all("x-returns" not in t for t in reg.openai_tools())
    assert reg.validate_arguments("open_page", {"title": "Shirley Temple"}) == []
    assert reg.validate_arguments("open_page", {"title": ""})  # minLength 1
    assert reg.validate_arguments("nope", {}) == ["unknown tool 'nope'"]
    assert reg.validate_observation("get_nationality", {"person": "Ed Wood", "nationality": "American"}) == []
    assert reg.validate_observation("get_nationality", {"person": "Ed Wood"})


def test_registry_strict_and_lenient(tools):
    broken = copy.deepcopy(tools)
    broken[0]["function"]["description"] = ""
    broken[1]["function"]["parameters"]["properties"]["title"]["type"] = "text"
    with pytest.raises(ToolSpecError, match="missing_description"):
        ToolRegistry(broken)
    reg = ToolRegistry(broken, strict=False)
    assert codes(reg.issues) == {"missing_description", "bad_schema"}
    assert "search_wikipedia" in reg and reg.validate_arguments("search_wikipedia", {"query": "q"}) == []
    assert reg.validate_arguments("open_page", {"title": "x"}) == ["tool 'open_page' has no valid parameters schema"]
