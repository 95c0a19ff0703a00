"""The embedded rollout engine: Hugging Face transformers with our own KV-cached decode loop (CPU or GPU).

`model.generate` is not used because GRPO needs, for every sampled token, its logprob under the
distribution it was drawn from (see `protocol` for the convention), per-request seeds and per-request
stop conditions inside one batch. The loop here is continuous batching, vLLM's scheduling in miniature:

- up to `batch_size` requests decode together, one token per row per step, in a `kv_cache.SlotCache`
  (each row's KV left-aligned in its slot, positions counted over its own tokens, so every row sees
  exactly what it would see alone);
- a row stops on a stop token id (the request's, plus the model's end-of-sequence ids), on a stop
  string found in its decoded tail, or at `max_new_tokens`, and leaves the batch at once;
- a waiting request takes the free slot at the next step: prefilled alone (less its last token, which
  the decode step feeds), on top of the longest cached prefix of it.

`generate` runs a list of prompts so; `generate_continuous` also takes each request's next turn from
the environment as soon as its previous turn ends, so a multi-turn batch never waits for its longest
turn. Finished sequences' KV is kept (`kv_cache.PrefixCache`), so the next turn of an episode prefills
only what was appended. Memory: the lifecycle is `ManagedEngine`'s; asleep on a GPU the weights wait in
host memory and the prefix cache is dropped.
"""

from __future__ import annotations

import inspect
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import MtrError, RunFailure
from ..precision import CHOICES, Precision, dtype_name, resolve_dtype, torch_dtype
from .json_constraint import JsonConstraint, JsonTokenTables, apply_constraints
from .kv_cache import PrefixCache, kv_shape, layer_tensors, slot_cache
from .lifecycle import ManagedEngine
from .protocol import FollowUp, Generation, SamplingParams, check_prompts
from .sampling import StopStringMatcher, make_generator, select_tokens


class HFRolloutEngine(ManagedEngine):
    """`RolloutEngine` over a transformers causal LM; a request's `json_schema` constrains its decoding
    (`json_constraint`).

    `model` is a name `resolve_model` knows ("smollm2-135m"), a HF directory, or an already-built
    `PreTrainedModel` (used as is, on its own device; pass `tokenizer` for stop strings).
    """

    supports_json_schema = True

    def __init__(
        self,
        model: Any,
        *,
        dtype: str = "fp32",
        device: str = "cpu",
        batch_size: int = 16,
        tokenizer: Any = None,
        eos_token_ids: list[int] | None = None,
        prefix_cache_gb: float = 2.0,
    ):
        if dtype not in CHOICES:
            raise MtrError(f"dtype must be one of {', '.join(CHOICES)}, got {dtype!r}")
        if batch_size < 1:
            raise MtrError(f"batch_size must be >= 1, got {batch_size}")
        super().__init__()
        self.batch_size = batch_size
        if isinstance(model, (str,)) or hasattr(model, "__fspath__"):
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from ..models.registry import resolve_model

            path = resolve_model(model)
            # `auto`: the machine's precision (bf16 on a CPU with avx512_bf16 or AMX, see `precision`).
            self.precision = resolve_dtype(dtype, device)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(self.precision.dtype)).to(
                device
            )
            tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(path)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        if not hasattr(self, "precision"):
            own = dtype_name(next(model.parameters()).dtype)
            self.precision = Precision(dtype, own, self.device.type, "the model's own weights")
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.eos_token_ids = set(eos_token_ids if eos_token_ids is not None else _model_eos_ids(model))
        self._params = dict(model.named_parameters(remove_duplicate=False))
        # transformers renamed `past_key_values` to `cache` (5.2x; the old name warns until 5.40).
        forward_args = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in forward_args else "past_key_values"
        # Finished sequences' KV for the next turn of their episode (0 turns prefix caching off).
        self._prefix = PrefixCache(int(prefix_cache_gb * 2**30)) if prefix_cache_gb > 0 else None
        self._json_tables: JsonTokenTables | None = None
        # Prompt tokens prefilled (`computed`) and taken from the prefix cache (`reused`), since built.
        self.prefill_stats = {"computed": 0, "reused": 0}

    # -- generation -------------------------------------------------------------------------------

    def _generate(self, prompts: list[list[int]], plist: list[SamplingParams]) -> list[Generation]:
        results: list[Generation | None] = [None] * len(prompts)

        def keep(i: int, gen: Generation) -> None:
            results[i] = gen

        self._decode(prompts, plist, keep, keep_finished=True)
        return results  # type: ignore[return-value]

    def generate_continuous(
        self, prompts: list[list[int]], params: SamplingParams | list[SamplingParams], follow_up: FollowUp
    ) -> None:
        """Continuous batching over multi-turn requests (see `protocol.generate_continuous`): when a
        request's turn ends, `follow_up` gives its next prompt, which is prefilled on top of the turn's
        cached KV and joins the decode batch at the next step."""
        self._decode(prompts, self._ready(prompts, params), follow_up, keep_finished=False)

    @torch.inference_mode()
    def _decode(
        self,
        prompts: list[list[int]],
        plist: list[SamplingParams],
        follow_up: FollowUp,
        keep_finished: bool,
    ) -> None:
        """The decode loop: admit pending requests into free slots, one decode step for every row, hand
        finished rows to `follow_up` (which may queue the request's next prompt). A finished row's KV
        goes to the prefix cache when its request goes on, and with `keep_finished` also when it ends
        (for a caller that sends the next turn in a later call)."""
        for p in plist:
            self._check_stops(p)
        pending = deque(zip(range(len(prompts)), map(list, prompts), plist, strict=True))
        model_dtype = next(self.model.parameters()).dtype
        cache = slot_cache(self.model.config, self.batch_size, model_dtype, self.device)
        rows: list[_Row] = []
        while rows or pending:
            if pending and len(rows) < self.batch_size:
                admitted = [pending.popleft() for _ in range(min(len(pending), self.batch_size - len(rows)))]
                for (req, prompt, params), kv in zip(
                    admitted, self._prefill([p for _, p, _ in admitted]), strict=True
                ):
                    cache.write(len(rows), kv)
                    rows.append(self._row(req, prompt, params))
            positions = torch.tensor([r.length for r in rows], device=self.device)
            mask = cache.step(positions)
            logits = self.model(
                input_ids=torch.tensor([[r.token] for r in rows], device=self.device),
                attention_mask=mask,
                position_ids=positions[:, None],
                **{self._cache_arg: cache},
                use_cache=True,
            ).logits[:, -1, :]
            logits = apply_constraints(logits, [r.constraint for r in rows])
            tokens, lps = select_tokens(logits, [r.params for r in rows], [r.gen for r in rows])
            finished = []
            for j, (r, tok, lp) in enumerate(zip(rows, tokens.tolist(), lps.tolist(), strict=True)):
                r.length += 1
                r.token = tok
                r.out_ids.append(tok)
                r.out_lps.append(lp)
                if r.constraint is not None:
                    r.constraint.advance(tok)
                gen = _finished(r.out_ids, r.out_lps, r.params, r.stop_ids, r.stops)
                if gen is not None:
                    finished.append((j, gen))
            for j, gen in reversed(finished):  # from the end, so the row moved into slot j is a live one
                self._finish(cache, rows[j], j, gen, follow_up, pending, keep_finished)
                last = len(rows) - 1
                if j != last:
                    cache.move(last, j, rows[last].length)
                    rows[j] = rows[last]
                rows.pop()

    def _check_stops(self, params: SamplingParams) -> None:
        if params.stop_strings and self.tokenizer is None:
            raise MtrError("stop_strings need a tokenizer; build HFRolloutEngine with tokenizer=...")

    def _row(self, req: int, prompt: list[int], params: SamplingParams) -> _Row:
        return _Row(
            req,
            prompt,
            params,
            make_generator(params.seed, self.device),
            StopStringMatcher(self.tokenizer, params.stop_strings),
            set(params.stop_token_ids) | self.eos_token_ids,
            length=len(prompt) - 1,
            token=prompt[-1],
            constraint=self._constraint(prompt, params),
        )

    def _constraint(self, prompt: list[int], params: SamplingParams) -> JsonConstraint | None:
        if params.json_schema is None:
            return None
        if self.tokenizer is None:
            raise MtrError("json_schema needs a tokenizer; build HFRolloutEngine with tokenizer=...")
        if self._json_tables is None:
            ends = sorted(set(params.stop_token_ids) | self.eos_token_ids)
            self._json_tables = JsonTokenTables(self.tokenizer, self.vocab_size, ends)
        return JsonConstraint(self._json_tables, params.json_schema, prompt)

    def _finish(self, cache, row: _Row, slot: int, gen: Generation, follow_up, pending, keep: bool) -> None:
        """Hand a finished row to `follow_up`; keep its KV (prompt and every sampled token but the last,
        which was never fed) for its next prompt."""
        nxt = follow_up(row.req, gen)
        if nxt is not None:
            prompt, params = list(nxt[0]), nxt[1]
            check_prompts([prompt], self.vocab_size)
            self._check_stops(params.validate())
            pending.append((row.req, prompt, params))
        if self._prefix is not None and (nxt is not None or keep):
            self._prefix.store(tuple(row.prompt) + tuple(row.out_ids[:-1]), cache.read(slot, row.length))

    def _prefill(self, prompts: list[list[int]]) -> list[list]:
        """The KV of every prompt but its last token (which the next decode step feeds), one
        [kv_heads, length, head_dim] pair per layer. Each distinct prompt is prefilled alone, on top of
        the longest cached prefix of it: prefill is compute-bound, so batching it saves nothing, while
        padding rows to the longest new part would (one row may add a 300-token observation, another a
        single token). Rows with the same prompt (the G episodes of a group) share one prefill. A
        cached prefix that a prompt extends is dropped: the extended sequence is stored when it ends."""
        from transformers import DynamicCache

        n_layers, kv_heads, head_dim = kv_shape(self.model.config)
        dtype = next(self.model.parameters()).dtype
        done: dict[tuple[int, ...], list] = {}
        consumed = set()
        for prompt in prompts:
            key = tuple(prompt[:-1])
            if key in done:
                continue
            hit, entry = self._prefix.lookup(list(key)) if self._prefix is not None else (None, None)
            cached = entry.length if entry is not None else 0
            self.prefill_stats["reused"] += cached
            self.prefill_stats["computed"] += len(key) - cached
            if hit is not None:
                consumed.add(hit)
            if cached == len(key):
                empty = torch.zeros((kv_heads, 0, head_dim), dtype=dtype, device=self.device)
                done[key] = entry.kv if entry is not None else [(empty, empty)] * n_layers
                continue
            row = DynamicCache(config=self.model.config)
            for layer, (k, v) in enumerate(entry.kv if entry is not None else []):
                row.update(k[None], v[None], layer)
            self.model(
                input_ids=torch.tensor([key[cached:]], dtype=torch.long, device=self.device),
                position_ids=torch.arange(cached, len(key), device=self.device)[None],
                **{self._cache_arg: row},
                use_cache=True,
                logits_to_keep=1,
            )
            done[key] = [(k[0], v[0]) for k, v in layer_tensors(row)]
        for hit in consumed:
            self._prefix.drop(hit)
        return [done[tuple(p[:-1])] for p in prompts]

    # -- weights and memory -----------------------------------------------------------------------

    def _load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> dict:
        """Copy `(HF name, tensor)` pairs into the model's parameters in place (cached KV, computed
        with the old weights, is dropped).

        Tied embeddings: `lm_head.weight` and `model.embed_tokens.weight` name the same tensor, so
        either name updates both. Tensors are cast to the engine's dtype and device. An unknown name
        or a shape mismatch raises `RunFailure`; pairs before it are already applied.
        """
        if self._prefix is not None:
            self._prefix.clear()
        t0 = time.perf_counter()
        nbytes = count = 0
        with torch.no_grad():
            for name, tensor in named_tensors:
                param = self._params.get(name)
                if param is None:
                    raise RunFailure(
                        f"update_weights: unknown parameter name {name!r} (not in the rollout model)"
                    )
                if tuple(tensor.shape) != tuple(param.shape):
                    raise RunFailure(
                        f"update_weights: {name!r} has shape {tuple(tensor.shape)}, "
                        f"the rollout model expects {tuple(param.shape)}"
                    )
                param.copy_(tensor.detach().to(device=param.device, dtype=param.dtype))
                nbytes += tensor.numel() * tensor.element_size()
                count += 1
        return {"bytes": nbytes, "seconds": time.perf_counter() - t0, "tensors": count}

    def _sleep(self) -> None:
        """On GPU, move the weights to host memory (frees the device for the trainer); no-op on CPU."""
        if self._prefix is not None:
            self._prefix.clear()
        if self.device.type != "cpu":
            self.model.to("cpu")
            torch.cuda.empty_cache()

    def _wake_weights(self) -> None:
        if self.device.type != "cpu":
            self.model.to(self.device)

    def _wake_cache(self) -> None:
        pass  # the decode batch's KV lives only inside one `_decode` call

    @torch.inference_mode()
    def logits(self, token_ids: list[int]) -> torch.Tensor:
        """Full-sequence logits [len(token_ids), vocab] as float32 on CPU: for tests and diagnostics,
        not part of the `RolloutEngine` Protocol (vLLM does not expose them)."""
        check_prompts([token_ids], self.vocab_size)
        self._ensure_weights()
        ids = torch.tensor([token_ids], dtype=torch.long, device=self.device)
        return self.model(input_ids=ids, use_cache=False).logits[0].float().cpu()


@dataclass
class _Row:
    """One request in the decode batch."""

    req: int
    prompt: list[int]
    params: SamplingParams
    gen: torch.Generator
    stops: StopStringMatcher
    stop_ids: set[int]
    length: int  # KV columns filled: the prompt and the sampled tokens, less the token fed next
    token: int  # the token the next decode step feeds
    out_ids: list[int] = field(default_factory=list)
    out_lps: list[float] = field(default_factory=list)
    constraint: JsonConstraint | None = None  # a request with `json_schema`


def _finished(
    ids: list[int], lps: list[float], p: SamplingParams, stop_ids: set[int], stops: StopStringMatcher
) -> Generation | None:
    """The finished `Generation` of a row whose newest token is `ids[-1]`, or None to go on."""
    if ids[-1] in stop_ids:
        return Generation(list(ids), list(lps), "stop", ids[-1])
    hit = stops.match(ids)
    if hit is not None:
        return Generation(list(ids), list(lps), "stop", hit)
    if len(ids) >= p.max_new_tokens:
        return Generation(list(ids), list(lps), "length", None)
    return None


def _model_eos_ids(model) -> list[int]:
    """End-of-sequence ids from the generation config (else the model config); may be empty."""
    for cfg in (getattr(model, "generation_config", None), model.config):
        eos = getattr(cfg, "eos_token_id", None)
        if eos is not None:
            return list(eos) if isinstance(eos, (list, tuple)) else [int(eos)]
    return []
