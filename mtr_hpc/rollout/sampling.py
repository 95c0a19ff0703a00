"""Choosing the next token of every row of a batch, and noticing when a row must stop.

Rows of one batch may carry different settings (temperature, top-k, top-p, seed), so the settings are
per-row tensors and each row draws from its own `torch.Generator`: a request's sample depends on its
seed and its own logits only, never on which other requests share the batch.

The returned logprob follows the protocol's convention: log-softmax of the temperature-scaled logits
before truncation (raw logits when greedy); see `protocol`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .protocol import SamplingParams


def make_generator(seed: int | None, device: str | torch.device) -> torch.Generator:
    """A generator for one request; without a seed it is drawn from torch's global RNG (so
    `torch.manual_seed` makes unseeded runs reproducible too)."""
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def truncate_logits(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """`logits` [B, V] with tokens outside each row's top-k and top-p nucleus set to -inf.

    `top_k[b] == 0` and `top_p[b] == 1` disable the respective filter; the most likely token is
    always kept.
    """
    if bool((top_k == 0).all()) and bool((top_p >= 1).all()):
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    rank = torch.arange(logits.shape[-1], device=logits.device).expand_as(sorted_logits)
    k = torch.where(top_k > 0, top_k, logits.shape[-1]).unsqueeze(-1)
    drop = rank >= k
    probs = sorted_logits.masked_fill(drop, float("-inf")).softmax(dim=-1)
    # A token is outside the nucleus when the tokens ranked above it already reach top_p.
    mass_before = probs.cumsum(dim=-1) - probs
    drop |= mass_before >= top_p.unsqueeze(-1)
    drop[:, 0] = False
    mask = torch.zeros_like(drop).scatter(-1, order, drop)
    return logits.masked_fill(mask, float("-inf"))


def select_tokens(
    logits: torch.Tensor, params: Sequence[SamplingParams], generators: Sequence[torch.Generator]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next token ids [B] and their logprobs [B] (float32) for the last-position `logits` [B, V]."""
    logits = logits.float()
    dev = logits.device
    temp = torch.tensor([p.temperature for p in params], dtype=torch.float32, device=dev)
    greedy = temp == 0
    scaled = logits / torch.where(greedy, 1.0, temp).unsqueeze(-1)
    logprobs = scaled.log_softmax(dim=-1)
    tokens = scaled.argmax(dim=-1)
    if not bool(greedy.all()):
        top_k = torch.tensor([p.top_k for p in params], device=dev)
        top_p = torch.tensor([p.top_p for p in params], dtype=torch.float32, device=dev)
        probs = truncate_logits(scaled, top_k, top_p).softmax(dim=-1)
        for b in torch.nonzero(~greedy).flatten().tolist():
            tokens[b] = torch.multinomial(probs[b], 1, generator=generators[b])[0]
    return tokens, logprobs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


class StopStringMatcher:
    """Detects a stop string in the decoded tail of one sequence, one token at a time.

    Only the last few tokens are decoded at each step: a stop string first appears when the token
    holding its last character is appended, so a window a little longer than the longest stop
    string (every token decodes to at least one character) finds it at that step.
    """

    def __init__(self, tokenizer, stop_strings: Sequence[str]):
        self.tokenizer = tokenizer
        self.stop_strings = list(stop_strings)
        self.window = max((len(s) for s in self.stop_strings), default=0) + 2

    def match(self, token_ids: Sequence[int]) -> str | None:
        """The stop string that occurs in the tail of `token_ids`, if any."""
        if not self.stop_strings:
            return None
        tail = self.tokenizer.decode(
            list(token_ids[-self.window :]), skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        hits = [(tail.find(s), s) for s in self.stop_strings if s in tail]
        return min(hits)[1] if hits else None
