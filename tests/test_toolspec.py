"""Tool interface validation, argument/observation checks and the registry."""

from __future__ import annotations

import copy
import json
import random

import pytest
from _paths import FIXTURES
from jsonschema import Draft202012Validator

from mtr_hpc.toolspec import (
    ToolRegistry,
    ToolSpecError,
    openai_view,
    tool_warnings,
    validate_arguments,
    validate_observation,
    validate_tool,
    validate_toolset,
)
from mtr_hpc.toolspec.fastpath import quick_schema_ok
from mtr_hpc.toolspec.schemas import compiled_validator, schema_errors


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


def test_missing_descriptions_are_warnings_unless_strict(search):
    # OpenAI's format makes descriptions optional; the project's rule is a warning unless strict.
    search["function"]["description"] = "  "
    del search["function"]["parameters"]["properties"]["k"]["description"]
    assert validate_tool(search) == [] and validate_toolset([search]) == []
    expected = {"function.description", "function.parameters.properties.k.description"}
    assert {i.path for i in tool_warnings(search)} == expected
    issues = validate_tool(search, strict=True)
    assert {i.path for i in issues if i.code == "missing_description"} == expected
    assert codes(validate_toolset([search], strict=True)) == {"missing_description"}


def test_a_tool_without_parameters_takes_no_arguments(search):
    del search["function"]["parameters"]
    assert validate_tool(search) == []
    name = search["function"]["name"]
    registry = ToolRegistry([search])
    assert registry.validate_arguments(name, {}) == []
    assert registry.validate_arguments(name, {"query": "x"})
    assert validate_arguments(search, {}) == [] and validate_arguments(search, {"query": "x"})


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
    assert codes(validate_tool({"type": "tool", "function": {}, "x-returns": {}}, strict=True)) >= {
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
    broken[0]["function"]["description"] = ""  # a warning only: the registry takes it
    broken[0]["x-returns"]["type"] = "array"
    broken[1]["function"]["parameters"]["properties"]["title"]["type"] = "text"
    with pytest.raises(ToolSpecError, match="not_object_schema"):
        ToolRegistry(broken)
    reg = ToolRegistry(broken, strict=False)
    assert codes(reg.issues) == {"not_object_schema", "bad_schema"}
    assert "search_wikipedia" in reg and reg.validate_arguments("search_wikipedia", {"query": "q"}) == []
    assert reg.validate_arguments("open_page", {"title": "x"}) == [
        "tool 'open_page' has no valid parameters schema"
    ]


def _random_schema(rng: random.Random, depth: int = 0) -> dict:
    kind = rng.choice(
        ["string", "integer", "number", "boolean", "null", "enum", "array", "object", ["string", "null"]]
    )
    if kind == "enum":
        return {"enum": rng.sample(["a", "b", "c", "yes"], rng.randint(1, 3))}
    schema: dict = {"type": kind, "description": "d"}
    if kind == "string" and rng.random() < 0.5:
        schema["minLength"], schema["maxLength"] = 1, rng.randint(1, 4)
    if kind in ("integer", "number") and rng.random() < 0.5:
        schema[rng.choice(["minimum", "exclusiveMinimum"])] = rng.choice([0, 1.5])
        schema[rng.choice(["maximum", "exclusiveMaximum"])] = rng.choice([3, 10])
    if kind == "array":
        schema["items"] = _random_schema(rng, depth + 1) if depth < 2 else {"type": "string"}
        schema["maxItems"] = rng.randint(0, 3)
    if kind == "object":
        props = (
            {f"p{i}": _random_schema(rng, depth + 1) for i in range(rng.randint(0, 3))} if depth < 2 else {}
        )
        schema["properties"] = props
        schema["required"] = rng.sample(sorted(props), rng.randint(0, len(props)))
        schema["additionalProperties"] = rng.choice([True, False, {"type": "integer"}])
    return schema


_VALUES = [None, True, False, 0, 1, 2.0, 2.5, -1, 11, "", "a", "yes", "abcde", 1e308, float("nan")]


def _random_value(rng: random.Random, depth: int = 0):
    r = rng.random()
    if depth < 3 and r < 0.2:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if depth < 3 and r < 0.45:
        return {
            rng.choice(["p0", "p1", "p2", "x"]): _random_value(rng, depth + 1)
            for _ in range(rng.randint(0, 4))
        }
    return rng.choice(_VALUES)


def test_fast_path_never_accepts_what_jsonschema_rejects():
    rng = random.Random(7)
    accepted = 0
    for _ in range(400):
        schema = _random_schema(rng)
        compiled = compiled_validator(schema)
        assert compiled is not None and compiled.fast is not None, schema
        reference = Draft202012Validator(schema)
        for _ in range(15):
            value = _random_value(rng)
            if compiled.fast(value):
                accepted += 1
                assert reference.is_valid(value), (schema, value)
            assert (compiled.errors(value) == []) == reference.is_valid(value), (schema, value)
    assert accepted > 500  # the fast path does accept, it is not trivially conservative


def test_fast_path_covers_the_fixture_tools(tools):
    for tool in tools:
        for schema in (tool["function"]["parameters"], tool["x-returns"]):
            assert compiled_validator(schema).fast is not None
    assert compiled_validator({"type": "object", "patternProperties": {"^a": {}}}).fast is None


_BAD_KEYWORDS = [
    ("type", "strng"),
    ("type", []),
    ("type", ["string", "string"]),
    ("type", [{"x": 1}]),
    ("required", ["a", "a"]),
    ("required", "a"),
    ("required", [1]),
    ("minLength", -1),
    ("maxItems", 1.5),
    ("maxItems", True),
    ("minimum", "0"),
    ("enum", "a"),
    ("description", 3),
    ("properties", {"a": 3}),
    ("properties", []),
    ("items", "string"),
    ("additionalProperties", None),
    ("examples", {}),
    ("deprecated", "no"),
    ("$schema", "https://json-schema.org/draft/2020-12/schema"),
    ("patternProperties", {"^a": {}}),
]


def _mutate_schema(rng: random.Random, schema: dict) -> dict:
    schema = copy.deepcopy(schema)
    target = schema
    while isinstance(target.get("properties"), dict) and target["properties"] and rng.random() < 0.5:
        target = rng.choice(list(target["properties"].values()))
    key, value = rng.choice(_BAD_KEYWORDS)
    target[key] = value
    return schema


def test_quick_schema_check_never_accepts_an_invalid_schema():
    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    rng = random.Random(11)
    n_quick = n_invalid = 0
    for _ in range(300):
        schema = _random_schema(rng)
        for candidate in (schema, _mutate_schema(rng, schema)):
            valid = meta.is_valid(candidate)
            n_invalid += not valid
            if quick_schema_ok(candidate):
                n_quick += 1
                assert valid, candidate
            assert (schema_errors(candidate) == []) == valid, candidate
    assert n_quick >= 300 and n_invalid > 100
