"""JSON-Schema-constrained decoding for the transformers engine: which tokens may come next.

A request with `SamplingParams.json_schema` (a model playing a tool) may only sample tokens that keep
its output a prefix of an instance of the schema, and may end (sample the end-of-sequence token) only
once the instance is complete. The character-level JSON Schema parser and the walk of the tokenizer's
prefix tree are lm-format-enforcer's (`TokenEnforcer`, `JsonSchemaParser`); the tokenizer's tables are
built once per engine (a few seconds for a 49k vocabulary).

Departure from the logprob convention (`protocol`): the logprobs of a constrained row are those of
the masked distribution. No policy rollout is constrained; only chat answers are.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import MtrError


class JsonTokenTables:
    """The tokenizer's side of constrained decoding, shared by every constrained row of an engine."""

    def __init__(self, tokenizer, vocab_size: int, eos_ids: list[int]):
        from lmformatenforcer import TokenEnforcerTokenizerData

        n = min(vocab_size, len(tokenizer))
        regular = _token_strings(tokenizer, n)
        self.data = TokenEnforcerTokenizerData(
            regular, lambda ids: tokenizer.decode(ids).rstrip("\ufffd"), list(eos_ids), False, n
        )
        self.vocab_size = vocab_size


# Bounds the decoder adds where the schema sets none, so that an answer ends within its token budget: a
# small model playing `search` otherwise copies whole passages into every snippet.
MAX_STRING_CHARS = 200
MAX_ARRAY_ITEMS = 3


def decoding_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema the decoder follows, a narrowing of `schema` (the answer is validated against
    `schema` itself). An object whose `anyOf` branches only list required properties (a tool's
    `x-returns`: `anyOf: [{required: [results...]}, {required: [error]}]`) is decoded as its first
    branch: those properties, and no others. Strings and arrays without a bound get
    `MAX_STRING_CHARS` / `MAX_ARRAY_ITEMS`."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    branches = schema.get("anyOf")
    if isinstance(branches, list) and branches and all(set(b) == {"required"} for b in branches):
        required = list(branches[0]["required"])
        props = schema.get("properties") or {}
        out.pop("anyOf")
        out.update(
            type="object",
            properties={k: props.get(k, {}) for k in required},
            required=required,
            additionalProperties=False,
        )
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: decoding_schema(v) for k, v in out["properties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = decoding_schema(out["items"])
    if out.get("type") == "string" and "enum" not in out and "maxLength" not in out:
        out["maxLength"] = MAX_STRING_CHARS
    if out.get("type") == "array" and "maxItems" not in out:
        out["maxItems"] = max(MAX_ARRAY_ITEMS, int(out.get("minItems", 0)))
    return out


def _token_strings(tokenizer, n: int) -> list[tuple[int, str, bool]]:
    """(id, text, starts a word) of every non-special token below `n`. A token's text is decoded after
    a fixed token and that token's text removed, so a leading space that decoding a lone token drops is
    kept; a token whose text is longer so starts a new word. Tokens that are not whole characters are left
    out."""
    special = set(tokenizer.all_special_ids)
    ids = [i for i in range(n) if i not in special]
    anchor = tokenizer.encode("0", add_special_tokens=False)[-1]
    width = len(tokenizer.decode([anchor]))
    after = tokenizer.batch_decode([[anchor, i] for i in ids])
    alone = tokenizer.batch_decode([[i] for i in ids])
    # A byte-level token that is part of a character decodes to U+FFFD: left out, so an output only ever
    # holds whole characters (the parser reads characters).
    return [
        (i, a[width:], len(a) - width > len(b))
        for i, a, b in zip(ids, after, alone, strict=True)
        if "\ufffd" not in a
    ]


class JsonConstraint:
    """One row's state: the allowed next tokens given what it has sampled so far."""

    def __init__(self, tables: JsonTokenTables, schema: dict[str, Any], prompt: list[int]):
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer

        try:
            parser = JsonSchemaParser(decoding_schema(schema))
        except Exception as exc:  # the parser's own validation of the schema
            raise MtrError(f"json_schema cannot constrain decoding: {exc}") from None
        self.enforcer = TokenEnforcer(tables.data, parser)
        self.vocab_size = tables.vocab_size
        self.sequence = list(prompt)

    def allowed(self, device) -> torch.Tensor:
        """Bool mask [vocab] of the tokens that may come next."""
        ids = self.enforcer.get_allowed_tokens(self.sequence).allowed_tokens
        mask = torch.zeros(self.vocab_size, dtype=torch.bool, device=device)
        mask[torch.as_tensor(list(ids), dtype=torch.long, device=device)] = True
        return mask

    def advance(self, token: int) -> None:
        self.sequence.append(token)


def apply_constraints(logits: torch.Tensor, constraints: list[JsonConstraint | None]) -> torch.Tensor:
    """`logits` [B, V] with the disallowed tokens of each constrained row at -inf."""
    rows = [j for j, c in enumerate(constraints) if c is not None]
    if not rows:
        return logits
    logits = logits.clone()
    for j in rows:
        logits[j].masked_fill_(~constraints[j].allowed(logits.device), float("-inf"))
    return logits
