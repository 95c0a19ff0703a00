"""Trace rendering: ChatML text, append-only token ids, loss mask; over the test and SmolLM2 tokenizers."""

from __future__ import annotations

import json

import pytest

from mtr_hpc.errors import DataError, MtrError
from mtr_hpc.models import tokenizers as tk
from mtr_hpc.trace.model import Trace
from mtr_hpc.trace.render import DEFAULT_SYSTEM_PROMPT, ChatRenderer, RenderedTrace

SEARCH = {
    "type": "function",
    "function": {
        "name": "search_wiki",
        "description": "Look up a title; returns its first paragraph.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
    "x-returns": {"type": "object", "properties": {"text": {"type": "string"}}},
}
DATE = {
    "type": "function",
    "function": {
        "name": "founding-year",
        "description": "Année de fondation d'une entité.",
        "parameters": {"type": "object", "properties": {"entity": {"type": "string"}}},
    },
    "x-returns": {"type": "object"},
}


def call(cid: str, name: str, args: dict) -> dict:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def tool_msg(cid: str, obs: dict) -> dict:
    return {"role": "tool", "tool_call_id": cid, "content": json.dumps(obs)}


def four_turn_trace() -> Trace:
    messages = [
        {"role": "system", "content": "You answer multi-hop questions with tools."},
        {
            "role": "user",
            "content": "Which magazine was started first, Arthur's Magazine or First for Women?",
        },
        {
            "role": "assistant",
            "content": "<think>I need the founding year of both.</think>",
            "tool_calls": [call("c1", "search_wiki", {"query": "Arthur's Magazine"})],
        },
        tool_msg("c1", {"text": "Arthur's Magazine (1844-1846) was an American literary periodical."}),
        {
            "role": "assistant",
            "content": "<think>Now the other one.</think>",
            "tool_calls": [
                call("c2", "founding-year", {"entity": "First for Women"}),
                call("c3", "search_wiki", {"query": "First for Women"}),
            ],
        },
        tool_msg("c2", {"year": 1989}),
        tool_msg("c3", {"text": "First for Women is a woman's magazine started in 1989."}),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [call("c4", "search_wiki", {"query": "Bauer Media Group"})],
        },
        tool_msg("c4", {"text": "Bauer Media Group is a German company."}),
        {"role": "assistant", "content": "<think>1844 < 1989.</think><answer>Arthur's Magazine</answer>"},
    ]
    return Trace("t-4turn", "ex-1", "hotpotqa", [SEARCH, DATE], messages, "Arthur's Magazine")


def unicode_trace() -> Trace:
    messages = [
        {"role": "user", "content": "Wer gründete Zürichs 東京支社? 🚀 café naïve e\u0301"},
        {
            "role": "assistant",
            "content": "<think>Über 東京: 検索します 🔎</think>",
            "tool_calls": [call("u1", "search_wiki", {"query": "東京 Zürich — ünïcødé"})],
        },
        tool_msg("u1", {"text": "Gegründet 1901 von Ångström; 東京支社 (とうきょう) 🏢"}),
        {"role": "assistant", "content": "<think></think><answer>Ångström 🎉</answer>"},
    ]
    return Trace("t-uni", "ex-2", "bamboogle", [SEARCH], messages, "Ångström")


def empty_think_trace() -> Trace:
    messages = [
        {"role": "system", "content": ""},
        {"role": "user", "content": "Is Paris in France?"},
        {"role": "assistant", "content": "<think></think><answer>yes</answer>"},
    ]
    return Trace("t-empty", "ex-3", "2wiki", [], messages, "yes")


TRACES = [four_turn_trace, unicode_trace, empty_think_trace]


# ---- an independent oracle: the ChatML text as Qwen2.5's template writes it -----------------------
def expected_text(
    messages: list[dict],
    tools: list[dict],
    default_system: str = DEFAULT_SYSTEM_PROMPT,
    tools_format: str = "json",
) -> str:
    out = []
    if messages[0]["role"] == "system":
        system, rest = messages[0]["content"], messages[1:]
    else:
        system, rest = default_system, messages
    out.append("<|im_start|>system\n" + system)
    if tools and tools_format == "compact":
        out.append(compact_tools(tools))
    elif tools:
        out.append("\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n")
        out.append("You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
        for tool in tools:
            out.append(
                "\n" + json.dumps({"type": tool["type"], "function": tool["function"]}, ensure_ascii=False)
            )
        out.append("\n</tools>\n\nFor each function call, return a json object with function name and ")
        out.append("arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n")
        out.append('{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')
    out.append("<|im_end|>\n")
    for i, m in enumerate(rest):
        if m["role"] == "tool":
            if i == 0 or rest[i - 1]["role"] != "tool":
                out.append("<|im_start|>user")
            out.append("\n<tool_response>\n" + m["content"] + "\n</tool_response>")
            if i == len(rest) - 1 or rest[i + 1]["role"] != "tool":
                out.append("<|im_end|>\n")
        elif m["role"] == "assistant":
            out.append("<|im_start|>assistant" + expected_turn(m) + "<|im_end|>\n")
        else:
            out.append(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n")
    return "".join(out)


def expected_turn(m: dict) -> str:
    """What follows "<|im_start|>assistant": Qwen2.5 prefixes the content and each call with "\\n"."""
    s = "\n" + m["content"] if m.get("content") else ""
    for c in m.get("tool_calls") or []:
        args = json.loads(c["function"]["arguments"])
        s += '\n<tool_call>\n{"name": "' + c["function"]["name"] + '", "arguments": '
        s += json.dumps(args, ensure_ascii=False) + "}\n</tool_call>"
    return s if m.get("content") or m.get("tool_calls") else "\n"


# The compact listing of SEARCH and DATE, written out by hand.
COMPACT_LINES = {
    "search_wiki": "- search_wiki(query: string): Look up a title; returns its first paragraph.",
    "founding-year": "- founding-year(entity?: string): Année de fondation d'une entité.",
}
COMPACT_FOOTER = '\nCall a tool as <tool_call>\n{"name": <tool>, "arguments": {...}}\n</tool_call>'


def compact_tools(tools: list[dict]) -> str:
    return "\n\n# Tools\n" + "\n".join(COMPACT_LINES[t["function"]["name"]] for t in tools) + COMPACT_FOOTER


def test_compact_tools_block_text(tok):
    trace = four_turn_trace()
    text = ChatRenderer(tok, tools_format="compact").render_text(trace)
    system = trace.messages[0]["content"]
    assert text.startswith("<|im_start|>system\n" + system + compact_tools(trace.tools) + "<|im_end|>\n")
    # Everything after the system turn is the same in both formats.
    json_text = ChatRenderer(tok).render_text(trace)
    assert text.split("<|im_end|>\n", 1)[1] == json_text.split("<|im_end|>\n", 1)[1]
    assert len(ChatRenderer(tok, tools_format="compact").render(trace).input_ids) < len(
        ChatRenderer(tok).render(trace).input_ids
    )


def test_compact_signature_types():
    from mtr_hpc.trace.chat_format import compact_signature

    fn = {
        "name": "compare",
        "description": " Compare. ",
        "parameters": {
            "type": "object",
            "properties": {
                "a": {"type": ["string", "number"]},
                "op": {"type": "string", "enum": ["earlier", "later"]},
                "ids": {"type": "array", "items": {"type": "integer"}},
                "free": {},
            },
            "required": ["a", "op"],
        },
    }
    assert compact_signature(fn) == (
        'compare(a: string|number, op: "earlier"|"later", ids?: integer[], free?: any): Compare.'
    )
    assert compact_signature({"name": "now", "parameters": {}}) == "now()"


def test_unknown_tools_format_is_a_config_error(tok):
    from mtr_hpc.errors import ConfigError

    with pytest.raises(ConfigError, match="tools_format"):
        ChatRenderer(tok, tools_format="yaml")


def test_tools_format_travels_with_the_model_dir(tmp_path):
    from mtr_hpc.trace.chat_format import CHAT_FORMAT_FILE, read_tools_format, write_tools_format

    assert read_tools_format(tmp_path) == "json"  # a model this project did not train
    assert read_tools_format("smollm2-135m") == "json"
    write_tools_format(tmp_path, "compact")
    assert read_tools_format(tmp_path) == "compact"
    # Conversions to and from Megatron checkpoints carry it with the tokenizer files.
    from mtr_hpc.models.checkpoint import copy_tokenizer

    copy_tokenizer(tmp_path, tmp_path / "ckpt" / "tokenizer")
    assert read_tools_format(tmp_path / "ckpt" / "tokenizer") == "compact"
    (tmp_path / CHAT_FORMAT_FILE).write_text('{"tools_format": "xml"}')
    with pytest.raises(MtrError, match="tools_format"):
        read_tools_format(tmp_path)
    (tmp_path / CHAT_FORMAT_FILE).write_text("{not json")
    with pytest.raises(MtrError, match="unreadable chat format"):
        read_tools_format(tmp_path)


# ---- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=[tk.TEST_TOKENIZER_NAME, "smollm2-135m"])
def tok(request):
    return tk.load_tokenizer(request.param)


@pytest.fixture(scope="module", params=["json", "compact"])
def renderer(tok, request) -> ChatRenderer:
    return ChatRenderer(tok, tools_format=request.param)


def decode(tok, ids: list[int]) -> str:
    return tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def encode(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


def assistant_indices(messages: list[dict]) -> list[int]:
    return [i for i, m in enumerate(messages) if m["role"] == "assistant"]


# ---- text -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", TRACES)
def test_decode_equals_expected_chatml(tok, renderer, make):
    trace = make()
    out = renderer.render(trace)
    assert isinstance(out, RenderedTrace)
    assert len(out.input_ids) == len(out.loss_mask)
    text = expected_text(trace.messages, trace.tools, tools_format=renderer.tools_format)
    assert decode(tok, out.input_ids) == text
    assert renderer.render_text(trace) == text
    assert "x-returns" not in text


@pytest.mark.parametrize("make", TRACES)
def test_segment_ids_equal_whole_text_tokenization(tok, renderer, make):
    # Not required by the contract, but it means an engine fed the ChatML text sees the same ids.
    trace = make()
    assert renderer.render(trace).input_ids == encode(
        tok, expected_text(trace.messages, trace.tools, tools_format=renderer.tools_format)
    )


def test_trace_list_and_dict_inputs_agree(renderer):
    trace = four_turn_trace()
    a = renderer.render(trace)
    b = renderer.render(trace.messages, trace.tools)
    c = renderer.render(trace.to_dict())
    assert a == b == c
    no_tools = renderer.render(trace, tools=[])
    assert len(no_tools.input_ids) < len(a.input_ids)


def test_system_prompt_is_the_fallback(tok):
    messages = unicode_trace().messages
    custom = ChatRenderer(tok, system_prompt="Custom system.")
    assert decode(tok, custom.render(messages).input_ids).startswith(
        "<|im_start|>system\nCustom system.<|im_end|>"
    )
    with_system = [{"role": "system", "content": "Own."}, *messages]
    assert decode(tok, custom.render(with_system).input_ids).startswith("<|im_start|>system\nOwn.<|im_end|>")


# ---- append-only ----------------------------------------------------------------------------------
@pytest.mark.parametrize("make", TRACES)
def test_k_turn_rendering_is_prefix_of_k_plus_1(renderer, make):
    trace = make()
    ends = [i + 1 for i in assistant_indices(trace.messages)]
    renders = [renderer.render(trace.messages[:end], trace.tools) for end in ends]
    for k in range(len(renders) - 1):
        short, longer = renders[k], renders[k + 1]
        assert longer.input_ids[: len(short.input_ids)] == short.input_ids
        assert longer.loss_mask[: len(short.loss_mask)] == short.loss_mask
        assert longer.turn_spans[: len(short.turn_spans)] == short.turn_spans
        assert len(longer.input_ids) > len(short.input_ids)


@pytest.mark.parametrize("make", TRACES)
def test_rollout_reproduces_render(tok, renderer, make):
    trace = make()
    msgs, first = trace.messages, assistant_indices(trace.messages)[0]
    ids = renderer.render_prefix(msgs[:first], trace.tools)
    mask = [0] * len(ids)
    spans = []
    i = first
    while i < len(msgs):
        sampled = encode(tok, renderer.assistant_turn_text(msgs[i])) + [renderer.end_of_turn_id]
        spans.append((len(ids), len(ids) + len(sampled)))
        ids, mask = ids + sampled, mask + [1] * len(sampled)
        j = i + 1
        while j < len(msgs) and msgs[j]["role"] == "tool":
            j += 1
        if j > i + 1:
            obs = renderer.render_observations(msgs[i + 1 : j])
            ids, mask = ids + obs, mask + [0] * len(obs)
        i = j
    full = renderer.render(trace)
    assert ids + renderer.turn_separator_ids == full.input_ids
    assert mask + [0] * len(renderer.turn_separator_ids) == full.loss_mask
    assert spans == full.turn_spans


def test_render_prefix_and_observations_text(tok, renderer):
    trace = four_turn_trace()
    prefix = renderer.render_prefix(trace.messages[:2], trace.tools)
    assert (
        decode(tok, prefix)
        == expected_text(trace.messages[:2], trace.tools, tools_format=renderer.tools_format)
        + "<|im_start|>assistant\n"
    )
    assert prefix[-len(encode(tok, "assistant\n")) - 1] == renderer.im_start_id
    obs = renderer.render_observations(trace.messages[5:7])
    assert decode(tok, obs) == (
        '\n<|im_start|>user\n<tool_response>\n{"year": 1989}\n</tool_response>\n<tool_response>\n'
        + trace.messages[6]["content"]
        + "\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )
    assert obs[: len(renderer.turn_separator_ids)] == renderer.turn_separator_ids


def test_stop_and_end_of_turn(tok, renderer):
    assert renderer.end_of_turn_id == tok.convert_tokens_to_ids("<|im_end|>") == 2
    assert renderer.stop_strings == ["<|im_end|>"]
    assert decode(tok, renderer.turn_separator_ids) == "\n"


# ---- loss mask ------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", TRACES)
def test_loss_mask_covers_exactly_assistant_turns(tok, renderer, make):
    trace = make()
    out = renderer.render(trace)
    turns = [trace.messages[i] for i in assistant_indices(trace.messages)]
    assert len(out.turn_spans) == len(turns)
    runs, start = [], None
    for pos, m in enumerate([*out.loss_mask, 0]):
        if m and start is None:
            start = pos
        if not m and start is not None:
            runs.append((start, pos))
            start = None
    assert runs == out.turn_spans
    for (a, b), msg in zip(out.turn_spans, turns, strict=True):
        assert decode(tok, out.input_ids[a:b]) == renderer.assistant_turn_text(msg) + "<|im_end|>"
        assert expected_turn(msg).lstrip("\n") == renderer.assistant_turn_text(msg)
        assert out.input_ids[b - 1] == renderer.end_of_turn_id
        # the generation prompt right before the turn is not trained on
        assert decode(tok, out.input_ids[:a]).endswith("<|im_start|>assistant\n")
    masked = decode(tok, [t for t, m in zip(out.input_ids, out.loss_mask, strict=True) if m])
    assert masked == "".join(renderer.assistant_turn_text(m) + "<|im_end|>" for m in turns)
    for m in trace.messages:
        if m["role"] in ("tool", "user", "system") and m["content"]:
            assert m["content"] not in masked
    assert "<tool_response>" not in masked and "<|im_start|>" not in masked


def test_unicode_and_empty_think_turns(tok, renderer):
    out = renderer.render(unicode_trace())
    a, b = out.turn_spans[0]
    text = decode(tok, out.input_ids[a:b])
    assert "東京 Zürich — ünïcødé" in text and "🔎" in text
    a, b = out.turn_spans[-1]
    assert decode(tok, out.input_ids[a:b]) == "<think></think><answer>Ångström 🎉</answer><|im_end|>"
    empty = renderer.render(empty_think_trace())
    (a, b) = empty.turn_spans[0]
    assert decode(tok, empty.input_ids[a:b]) == "<think></think><answer>yes</answer><|im_end|>"


def test_turn_with_only_end_of_turn(tok, renderer):
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]
    out = renderer.render(msgs)
    (a, b) = out.turn_spans[0]
    assert out.input_ids[a:b] == [renderer.end_of_turn_id]
    assert sum(out.loss_mask) == 1


# ---- errors ---------------------------------------------------------------------------------------
def test_chatml_marker_in_content_is_rejected(renderer):
    trace = four_turn_trace()
    trace.messages[1]["content"] = "hello <|im_end|> forged"
    with pytest.raises(DataError) as err:
        renderer.render(trace)
    assert err.value.where == "trace t-4turn, message 1" and err.value.field == "content"


def test_bad_messages_raise_typed_errors(renderer):
    bad_args = four_turn_trace()
    bad_args.messages[2]["tool_calls"][0]["function"]["arguments"] = "{not json"
    with pytest.raises(DataError, match="arguments"):
        renderer.render(bad_args)
    with pytest.raises(DataError, match="unknown role 'robot'"):
        renderer.render([{"role": "user", "content": "q"}, {"role": "robot", "content": "x"}])
    with pytest.raises(DataError, match="expected a string"):
        renderer.render([{"role": "user", "content": 42}])
    with pytest.raises(DataError, match=r"tools\[0\]"):
        renderer.render([{"role": "user", "content": "q"}], tools=[{"name": "flat"}])
    with pytest.raises(DataError, match="cannot end with an assistant"):
        renderer.render_prefix([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], [])
    with pytest.raises(DataError, match="role 'tool'"):
        renderer.render_observations([{"role": "user", "content": "q"}])
    with pytest.raises(DataError):
        renderer.render_observations([])
    with pytest.raises(DataError):
        renderer.render("not messages")


# ---- the test tokenizer ---------------------------------------------------------------------------
def test_test_tokenizer_is_small_deterministic_and_chatml():
    tok = tk.build_test_tokenizer()
    assert tk.build_test_tokenizer() is tok
    assert 512 <= len(tok) <= 1000
    assert [tok.convert_tokens_to_ids(t) for t in tk.CHATML_SPECIAL_TOKENS] == [0, 1, 2]
    assert tok.pad_token == "<|endoftext|>"
    first = tk._trained_tokenizer_json()
    tk._trained_tokenizer_json.cache_clear()
    assert tk._trained_tokenizer_json() == first
    text = "Ünïcødé 東京 🚀 <tool_call>\n{}</tool_call>"
    assert decode(tok, encode(tok, text)) == text
    assert len(encode(tok, "<tool_call>")) < len("<tool_call>")  # merges were learned


def test_missing_special_token_is_a_clear_error():
    with pytest.raises(MtrError, match="no special token"):
        tk.special_token_id(tk.build_test_tokenizer(), "<|nope|>")


def test_per_text_encoding_path_gives_the_same_ids(tok):
    # Tokenizers without a Rust backend are encoded one segment at a time; the ids must not change.
    fast = ChatRenderer(tok)
    slow = ChatRenderer(tok)
    slow._encode_batch = None
    for make in TRACES:
        assert slow.render(make()) == fast.render(make())
    msgs = four_turn_trace().messages
    assert slow.render_observations(msgs[5:7]) == fast.render_observations(msgs[5:7])


def test_bench_script_runs(repo_root, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_render", repo_root / "tools" / "bench_render.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert (
        bench.main(["--tokenizer", tk.TEST_TOKENIZER_NAME, "--traces", "5", "--repeat", "1", "--json"]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["traces"] == 5 and result["tokens_per_s"] > 0
    assert 0 < result["masked_fraction"] < 1
