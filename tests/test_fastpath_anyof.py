"""`anyOf` in the schema fast path: never accepts what jsonschema rejects; covers the synthesized tools."""

from __future__ import annotations

import random

from jsonschema import Draft202012Validator

from mtr_hpc.data import load_sample
from mtr_hpc.sim.schemas import error_observation
from mtr_hpc.synth import ToolMaker, build_kb
from mtr_hpc.toolspec.fastpath import compile_fast, quick_schema_ok
from mtr_hpc.toolspec.schemas import compiled_validator, schema_errors

_LEAVES = [
    {"type": "string"},
    {"type": "integer", "minimum": 0},
    {"type": "boolean"},
    {"type": "null"},
    {"enum": ["a", "b"]},
    {"type": "array", "items": {"type": "string"}, "maxItems": 2},
]


def _schema(rng: random.Random, depth: int = 0) -> dict:
    if depth >= 2 or rng.random() < 0.3:
        return dict(rng.choice(_LEAVES))
    props = {k: _schema(rng, depth + 1) for k in rng.sample(["p", "q", "r"], rng.randint(0, 3))}
    schema: dict = {"type": "object", "properties": props}
    schema["additionalProperties"] = rng.choice([True, False])
    if rng.random() < 0.7:
        names = sorted(props) + ["x"]
        schema["anyOf"] = [
            {"required": rng.sample(names, rng.randint(0, len(names)))}
            if rng.random() < 0.6
            else _schema(rng, 2)
            for _ in range(rng.randint(1, 3))
        ]
    return schema


def _value(rng: random.Random, depth: int = 0):
    r = rng.random()
    if depth < 2 and r < 0.4:
        return {k: _value(rng, depth + 1) for k in rng.sample(["p", "q", "r", "x"], rng.randint(0, 4))}
    if depth < 2 and r < 0.5:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return rng.choice([None, True, 0, 3, -1, 1.5, "", "a", "c"])


def test_any_of_fast_path_never_accepts_what_jsonschema_rejects():
    rng = random.Random(5)
    accepted = rejected_by_fast = 0
    for _ in range(300):
        schema = _schema(rng)
        compiled = compiled_validator(schema)
        assert compiled is not None and compiled.fast is not None, schema
        reference = Draft202012Validator(schema)
        for _ in range(20):
            value = _value(rng)
            valid = reference.is_valid(value)
            if compiled.fast(value):
                accepted += 1
                assert valid, (schema, value)
            else:
                rejected_by_fast += 1
            assert (compiled.errors(value) == []) == valid, (schema, value)
    assert accepted > 300 and rejected_by_fast > 300


def test_any_of_schema_check_agrees_with_the_metaschema():
    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    for schema in (
        {"anyOf": [{"required": ["a"]}, {"type": "string"}]},
        {"anyOf": []},
        {"anyOf": {"type": "string"}},
        {"anyOf": [{"type": "strng"}]},
        {"anyOf": [3]},
    ):
        assert (schema_errors(schema) == []) == meta.is_valid(schema), schema
        if quick_schema_ok(schema):
            assert meta.is_valid(schema), schema
    assert compile_fast({"anyOf": []}) is None
    assert compile_fast({"anyOf": [{"type": "string"}, {"patternProperties": {}}]}) is None


def test_synthesized_tools_observations_take_the_fast_path():
    n_tools = 0
    for name in ("hotpotqa", "musique", "2wiki", "bamboogle"):
        for ex in load_sample(name)[:5]:
            for tool in ToolMaker().make(ex, build_kb(ex)).tools:
                compiled = compiled_validator(tool["x-returns"])
                assert compiled is not None and compiled.fast is not None, tool["function"]["name"]
                assert compiled.fast(error_observation("not_found", "nothing"))
                assert not compiled.fast({"unexpected": 1}) and compiled.errors({"unexpected": 1})
                n_tools += 1
    assert n_tools > 20
