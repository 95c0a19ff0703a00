"""LLM clients without HTTP: protocol types, fakes, schema helpers, transformers (SmolLM2), vLLM absence."""

from __future__ import annotations

import asyncio
import json
import random
import sys

import jsonschema
import pytest
from _fake_vllm import install_fake_vllm

from mtr_hpc.errors import MissingDependencyError, MtrError
from mtr_hpc.llm import LLMClient, make_client
from mtr_hpc.llm.fake import EchoClient, ScriptedClient, schema_instance
from mtr_hpc.llm.json_output import check_schema_output, extract_json, with_schema_instruction
from mtr_hpc.llm.openai_http import OpenAIHTTPClient, RetryPolicy, parse_completion
from mtr_hpc.llm.protocol import ChatRequest, ChatResponse, InvalidRequestError, LLMError
from mtr_hpc.llm.server import request_from_body
from mtr_hpc.llm.transformers_client import TransformersClient
from mtr_hpc.llm.vllm_client import VLLMClient

MSGS = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"content": "no role"}]}, "messages[0]"),
        ({"messages": MSGS, "max_tokens": 0}, "max_tokens"),
        ({"messages": MSGS, "temperature": -1}, "temperature"),
        ({"messages": MSGS, "top_p": 0}, "top_p"),
        ({"messages": MSGS, "stop": "###"}, "stop"),
        ({"messages": MSGS, "json_schema": "object"}, "json_schema"),
        ({"messages": MSGS, "seed": "7"}, "seed"),
        ({"messages": MSGS, "seed": -1}, "seed"),
        ({"messages": MSGS, "seed": True}, "seed"),
    ],
)
def test_chat_request_rejects_bad_fields(kwargs, field):
    with pytest.raises(InvalidRequestError) as err:
        ChatRequest(**kwargs)
    assert err.value.field == field and isinstance(err.value, MtrError)


def test_llm_error_kinds():
    err = LLMError("http", "boom", retryable=True, status=503)
    assert "503" in str(err) and err.retryable and isinstance(err, MtrError)
    with pytest.raises(ValueError):
        LLMError("weird", "x")


def test_retry_policy_delays_are_jittered_and_capped():
    policy = RetryPolicy(max_retries=5, backoff_base_s=0.5, backoff_max_s=2.0)
    rng = random.Random(0)
    delays = [policy.delay(a, rng) for a in range(6) for _ in range(20)]
    assert all(0 <= d <= 2.0 for d in delays) and len(set(delays)) > 50
    assert max(policy.delay(0, rng) for _ in range(50)) <= 0.5
    assert policy.delay(0, rng, retry_after=1.5) == 1.5 and policy.delay(0, rng, retry_after=60) == 2.0


def test_parse_completion_rejects_non_completions():
    ok = parse_completion({"choices": [{"message": {"content": "x"}, "finish_reason": "length"}]}, 0.1, "m")
    assert (ok.text, ok.finish_reason, ok.model) == ("x", "length", "m")
    for bad in ({}, {"choices": []}, {"choices": [{"message": {"content": 3}}]}, [1]):
        with pytest.raises(LLMError) as err:
            parse_completion(bad, 0.0, "m")
        assert err.value.kind == "bad_response"


def test_request_from_body_maps_openai_fields():
    req = request_from_body(
        {
            "messages": MSGS,
            "stop": "END",
            "max_completion_tokens": 7,
            "response_format": {"type": "json_object"},
        }
    )
    assert req.stop == ["END"] and req.max_tokens == 7 and req.json_schema == {"type": "object"}
    assert req.temperature == 1.0  # the OpenAI default, not ChatRequest's
    with pytest.raises(InvalidRequestError) as err:
        request_from_body({"messages": MSGS, "response_format": {"type": "json_schema", "json_schema": {}}})
    assert err.value.field == "response_format.json_schema.schema"
    with pytest.raises(InvalidRequestError):
        request_from_body({"messages": MSGS, "n": 2})


@pytest.mark.parametrize(
    "schema",
    [
        {
            "type": "object",
            "properties": {"a": {"type": "integer", "minimum": 3}, "b": {"type": ["null", "string"]}},
        },
        {"type": "array", "items": {"type": "number", "maximum": -2}, "minItems": 3},
        {"anyOf": [{"type": "boolean"}, {"type": "string"}]},
        {
            "allOf": [
                {"properties": {"x": {"const": 1}}, "required": ["x"]},
                {"properties": {"y": {"enum": ["q"]}}},
            ]
        },
        {"type": "string", "minLength": 10, "maxLength": 12},
        {
            "type": "object",
            "properties": {"nested": {"type": "object", "properties": {"k": {"type": "boolean"}}}},
        },
    ],
)
def test_schema_instance_is_valid(schema):
    jsonschema.validate(schema_instance(schema), schema)


def test_clients_satisfy_the_protocol():
    assert isinstance(EchoClient(), LLMClient)
    assert isinstance(ScriptedClient(["a"]), LLMClient)
    assert isinstance(OpenAIHTTPClient("http://127.0.0.1:1", "m"), LLMClient)
    assert isinstance(TransformersClient("smollm2-135m"), LLMClient)  # loads nothing until used
    assert TransformersClient.supports_json_schema and OpenAIHTTPClient.supports_json_schema


def test_scripted_client_replays_in_order_and_records():
    client = ScriptedClient(["first", LLMError("timeout", "scripted", retryable=True), "third"])
    reqs = [ChatRequest([{"role": "user", "content": f"q{i}"}]) for i in range(4)]
    results = asyncio.run(client.chat_many(reqs))
    assert results[0].text == "first" and results[2].text == "third"
    assert isinstance(results[1], LLMError) and results[1].kind == "timeout"
    assert isinstance(results[3], LLMError) and "call 4" in str(results[3])
    assert [r.messages[0]["content"] for r in client.requests] == ["q0", "q1", "q2", "q3"]
    by_fn = ScriptedClient(lambda req: req.messages[-1]["content"][::-1])
    assert asyncio.run(by_fn.chat(ChatRequest([{"role": "user", "content": "abc"}]))).text == "cba"


def test_echo_client_answers_schema_or_last_user_message():
    client = make_client("echo", "ignored")
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    out = asyncio.run(client.chat_many([ChatRequest(MSGS), ChatRequest(MSGS, json_schema=schema)]))
    assert out[0].text == "hi" and json.loads(out[1].text) == {"n": 0}


def test_extract_and_check_schema_output():
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    assert extract_json('```json\n{"name": "Ada"}\n```') == {"name": "Ada"}
    assert extract_json('Sure! {"name": "Ada"} hope it helps') == {"name": "Ada"}
    assert check_schema_output('Here: {"name": "Ada"}', schema) == '{"name": "Ada"}'
    with pytest.raises(LLMError) as err:
        check_schema_output('{"name": 3}', schema)
    assert err.value.kind == "bad_response" and err.value.retryable and "name" in str(err.value)
    with pytest.raises(LLMError):
        check_schema_output("no json here", schema)


def test_schema_instruction_merges_into_system_message():
    schema = {"type": "object"}
    merged = with_schema_instruction([{"role": "system", "content": "S"}, *MSGS], schema)
    assert merged[0]["content"].startswith("S\n\n") and '{"type": "object"}' in merged[0]["content"]
    added = with_schema_instruction(MSGS, schema)
    assert added[0]["role"] == "system" and added[1:] == MSGS


def test_vllm_absent_gives_missing_dependency(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail even where it is installed
    with pytest.raises(MissingDependencyError) as err:
        make_client("vllm", "smollm2-135m")
    assert (
        err.value.package == "vllm"
        and "vLLM offline" in str(err.value)
        and "pip install vllm" in str(err.value)
    )


def test_vllm_client_is_the_chat_adapter_over_the_vllm_engine(monkeypatch):
    """Chat rendering, structured outputs, end-of-sequence and stop handling, through the engine."""
    import torch

    from mtr_hpc.models.registry import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    answers = iter(['{"n": 4}', "four. STOP and more", '{"n": 4'])

    def reply(prompt: list[int]) -> list[int]:
        return tok(next(answers), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]

    log: list = []
    install_fake_vllm(monkeypatch, log, reply)
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")  # restored after the test; the engine sets it
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    client = make_client("vllm", "smollm2-135m", max_model_len=2048)
    assert isinstance(client, VLLMClient) and isinstance(client, LLMClient)
    built = log[0][1]
    assert built["enable_sleep_mode"] is False and built["max_model_len"] == 2048

    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    reqs = [
        ChatRequest(MSGS, json_schema=schema, seed=3),
        ChatRequest(MSGS, stop=["STOP"], temperature=0.0),
        ChatRequest(MSGS, json_schema=schema),
    ]
    out = asyncio.run(client.chat_many(reqs))
    (_, prompts, params) = next(e for e in log if e[0] == "requests")
    chat = tok.apply_chat_template(MSGS, add_generation_prompt=True, tokenize=False)
    # The engine constrains decoding, so the prompt carries no schema instruction.
    assert prompts[0] == tok(chat, add_special_tokens=False)["input_ids"] == prompts[1]
    assert params[0]["structured_outputs"].json == schema and params[0]["seed"] == 3
    assert "structured_outputs" not in params[1] and params[1]["stop"] == ["STOP"]
    assert out[0].text == '{"n": 4}' and out[0].finish_reason == "stop"
    assert out[0].usage["completion_tokens"] == len(tok('{"n": 4}', add_special_tokens=False)["input_ids"])
    assert out[1].text == "four. " and out[1].finish_reason == "stop"
    assert isinstance(out[2], LLMError) and out[2].kind == "bad_response" and out[2].retryable


def test_make_client_rejects_unknown_backend():
    with pytest.raises(MtrError, match="unknown backend"):
        make_client("telepathy", "m")
    with pytest.raises(MtrError, match="base_url"):
        make_client("openai", "m")


@pytest.fixture(scope="module")
def smollm():
    import torch

    threads = torch.get_num_threads()
    client = TransformersClient("smollm2-135m", max_batch=4, num_threads=1)
    client.load()
    yield client
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_transformers_batch_with_stop_and_lengths(smollm):
    ask = [{"role": "user", "content": "List the numbers from 1 to 20, separated by commas."}]
    reqs = [
        ChatRequest(ask, max_tokens=6),
        ChatRequest(ask, max_tokens=24, stop=["5"]),
        ChatRequest(ask, max_tokens=3),
    ]
    first, stopped, short = asyncio.run(smollm.chat_many(reqs))
    assert all(isinstance(r, ChatResponse) for r in (first, stopped, short))
    assert short.usage["completion_tokens"] <= 3 and short.finish_reason == "length"
    assert first.usage["completion_tokens"] <= 6
    assert (
        stopped.text.startswith("1, 2, 3, 4") and "5" not in stopped.text and stopped.finish_reason == "stop"
    )
    # Greedy decoding is deterministic: the longer answer extends the shorter one.
    assert first.text.startswith(short.text)
    again = asyncio.run(smollm.chat(ChatRequest(ask, max_tokens=3)))
    assert again.text == short.text
