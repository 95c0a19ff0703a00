"""Tokenizers for rendering: a small locally trained ChatML tokenizer for fast tests, and checks.

`build_test_tokenizer()` trains a byte-level BPE (GPT-2 pre-tokenization, as SmolLM2 and Qwen2.5 use)
in-process on a few KB of built-in text: about 500 merges over the 256 byte symbols, with the ChatML
special tokens at the ids SmolLM2 gives them (`<|endoftext|>`=0, `<|im_start|>`=1, `<|im_end|>`=2).
Being byte-level it encodes any Unicode text and decodes it back unchanged, so every rendering property
that holds for the real tokenizer can be tested against it in milliseconds, with no model files.
Training is deterministic (the BPE trainer breaks count ties by pair order), and the result is cached
per process.

`load_tokenizer(name)` accepts `test-bpe` beside every name `mtr_hpc.models.registry` resolves.
"""

from __future__ import annotations

import functools
import os

from ..errors import MtrError

TEST_TOKENIZER_NAME = "test-bpe"
CHATML_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TEST_VOCAB_SIZE = 768

# Text shaped like what gets rendered (prose, JSON tool calls, the XML-ish tags), so the merges cover
# it and test sequences stay short; the exact wording does not matter.
_CORPUS_LINES = (
    "You are a helpful assistant. Answer the question by reasoning step by step and calling tools.",
    "# Tools",
    "You may call one or more functions to assist with the user query.",
    "You are provided with function signatures within <tools></tools> XML tags:",
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:",
    '{"type": "function", "function": {"name": "search_wiki", "description": "Search the encyclopedia '
    'for a title and return the first paragraph.", "parameters": {"type": "object", "properties": '
    '{"query": {"type": "string", "description": "The title to look up."}}, "required": ["query"]}}}',
    '<tool_call>\n{"name": "search_wiki", "arguments": {"query": "Arthur\'s Magazine"}}\n</tool_call>',
    '<tool_call>\n{"name": "lookup_date", "arguments": {"entity": "First for Women", "field": "founded"}}'
    "\n</tool_call>",
    '<tool_response>\n{"title": "Arthur\'s Magazine", "text": "Arthur\'s Magazine (1844-1846) was an '
    'American literary periodical published in Philadelphia in the 19th century."}\n</tool_response>',
    '<tool_response>\n{"result": "First for Women is a woman\'s magazine published by Bauer Media Group '
    'in the USA. The magazine was started in 1989."}\n</tool_response>',
    "<think>The question asks which magazine was started first. I should find the founding year of "
    "each magazine and then compare the two years.</think>",
    "<think>Arthur's Magazine was started in 1844 and First for Women in 1989, so Arthur's Magazine "
    "came first.</think><answer>Arthur's Magazine</answer>",
    "Which magazine was started first, Arthur's Magazine or First for Women?",
    "Who was the director of the film that won the award in the year the author was born?",
    "Are both the founder of the company and the composer of the opera from the same country?",
    "When did the river that flows through the capital of the country where the singer was born "
    "reach its highest recorded level?",
    "The answer is yes. The answer is no. The city is located in the north of the state.",
    "He was born on 12 March 1901 in Paris, France, and died in 1978 in New York City, United States.",
    "The band released their first album in 1995 and their second album, which won a prize, in 1998.",
)


def _corpus() -> list[str]:
    # Repeating the lines a few times makes their frequent pairs outrank one-off pairs without
    # adding new text; 3 copies are enough for ~500 merges.
    return list(_CORPUS_LINES) * 3


@functools.cache
def _trained_tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=TEST_VOCAB_SIZE,
        min_frequency=2,
        special_tokens=list(CHATML_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return tok.to_str()


@functools.cache
def build_test_tokenizer():
    """A small byte-level BPE tokenizer with the ChatML special tokens (a `PreTrainedTokenizerFast`).

    The same object is returned on every call within a process; treat it as read-only.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_str(_trained_tokenizer_json())
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 20,
    )


def load_tokenizer(name_or_path: str | os.PathLike):
    """`test-bpe` gives the local test tokenizer; anything else goes through the model registry."""
    if str(name_or_path) == TEST_TOKENIZER_NAME:
        return build_test_tokenizer()
    from .registry import load_tokenizer as load_registered

    return load_registered(name_or_path)


def special_token_id(tokenizer, token: str) -> int:
    """The id of a single special token, or an `MtrError` if the tokenizer lacks it."""
    ids = tokenizer.convert_tokens_to_ids([token])
    tid = ids[0] if ids else None
    unk = getattr(tokenizer, "unk_token_id", None)
    if tid is None or (unk is not None and tid == unk and token != getattr(tokenizer, "unk_token", None)):
        raise MtrError(f"tokenizer {_describe(tokenizer)} has no special token {token!r} (ChatML needs it)")
    encoded = tokenizer.encode(token, add_special_tokens=False)
    if encoded != [tid]:
        raise MtrError(
            f"tokenizer {_describe(tokenizer)} does not treat {token!r} as one special token "
            f"(it encodes to {encoded})"
        )
    return int(tid)


def _describe(tokenizer) -> str:
    return getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
