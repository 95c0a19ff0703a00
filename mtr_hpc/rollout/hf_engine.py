"""The embedded rollout engine: Hugging Face transformers with our own KV-cached decode loop (CPU or GPU).

`model.generate` is not used because GRPO needs, for every sampled token, its logprob under the
distribution it was drawn from (see `protocol` for the convention), per-request seeds and per-request
stop conditions inside one batch. The loop here:

- left-pads a batch of prompts of different lengths, with position ids counted over real tokens only,
  so every row sees the same positions it would see alone;
- prefills once, then feeds one token per row per step through a `DynamicCache`;
- drops a row from the batch (and from the KV cache) as soon as it finishes, so finished rows cost
  nothing;
- stops a row on a stop token id (the request's, plus the model's end-of-sequence ids), on a stop
  string found in its decoded tail, or at `max_new_tokens`.

Prompts are sorted by length before batching to cut padding; results come back in request order.
Between calls the engine keeps each finished generation's KV cache (`kv_cache.PrefixCache`), so the
next turn of an episode prefills only what was appended. Memory: the lifecycle is `ManagedEngine`'s;
asleep on a GPU the weights wait in host memory and the prefix cache is dropped.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterable
from typing import Any

import torch

from ..errors import MtrError
from .kv_cache import Entry, PrefixCache, batch_cache, growing, layer_tensors, row_kv
from .lifecycle import ManagedEngine
from .protocol import Generation, SamplingParams, check_prompts
from .sampling import StopStringMatcher, make_generator, select_tokens

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class HFRolloutEngine(ManagedEngine):
    """`RolloutEngine` over a transformers causal LM.

    `model` is a name `resolve_model` knows ("smollm2-135m"), a HF directory, or an already-built
    `PreTrainedModel` (used as is, on its own device; pass `tokenizer` for stop strings).
    """

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
        if dtype not in DTYPES:
            raise MtrError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        if batch_size < 1:
            raise MtrError(f"batch_size must be >= 1, got {batch_size}")
        super().__init__()
        self.batch_size = batch_size
        if isinstance(model, (str,)) or hasattr(model, "__fspath__"):
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from ..models.registry import resolve_model

            path = resolve_model(model)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype]).to(device)
            tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(path)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.eos_token_ids = set(eos_token_ids if eos_token_ids is not None else _model_eos_ids(model))
        self._params = dict(model.named_parameters(remove_duplicate=False))
        # transformers renamed `past_key_values` to `cache` (5.2x; the old name warns until 5.40).
        forward_args = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in forward_args else "past_key_values"
        # Finished sequences' KV for the next turn of their episode (0 turns prefix caching off).
        self._prefix = PrefixCache(int(prefix_cache_gb * 2**30)) if prefix_cache_gb > 0 else None

    # -- generation -------------------------------------------------------------------------------

    def _generate(self, prompts: list[list[int]], plist: list[SamplingParams]) -> list[Generation]:
        if self.tokenizer is None and any(p.stop_strings for p in plist):
            raise MtrError("stop_strings need a tokenizer; build HFRolloutEngine with tokenizer=...")
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Generation | None] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            outs = self._generate_batch([list(prompts[i]) for i in chunk], [plist[i] for i in chunk])
            for i, out in zip(chunk, outs, strict=True):
                results[i] = out
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def _generate_batch(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[Generation]:
        from transformers import DynamicCache

        n, dev = len(prompts), self.device
        cache = growing(DynamicCache(config=self.model.config))
        logits, mask, last_pos, consumed = self._prefill(prompts, cache)
        gens = [make_generator(p.seed, dev) for p in params]
        stops = [StopStringMatcher(self.tokenizer, p.stop_strings) for p in params]
        stop_ids = [set(p.stop_token_ids) | self.eos_token_ids for p in params]
        out_ids: list[list[int]] = [[] for _ in range(n)]
        out_lps: list[list[float]] = [[] for _ in range(n)]
        done: list[Generation | None] = [None] * n
        active = list(range(n))
        while True:
            tokens, lps = select_tokens(logits, [params[r] for r in active], [gens[r] for r in active])
            keep = []
            for j, (r, tok, lp) in enumerate(zip(active, tokens.tolist(), lps.tolist(), strict=True)):
                out_ids[r].append(tok)
                out_lps[r].append(lp)
                done[r] = _finished(out_ids[r], out_lps[r], params[r], stop_ids[r], stops[r])
                if done[r] is None:
                    keep.append(j)
                elif self._prefix is not None:
                    # Everything fed so far (prompt + sampled tokens but the last), for the next turn.
                    key = tuple(prompts[r]) + tuple(out_ids[r][:-1])
                    self._prefix.store(key, row_kv(cache, j, mask[j].bool()))
                    consumed.discard(key)
            if not keep:
                break
            if len(keep) < len(active):
                idx = torch.tensor(keep, device=dev)
                cache.batch_select_indices(idx)
                mask, tokens, last_pos = mask[idx], tokens[idx], last_pos[idx]
                active = [active[j] for j in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            last_pos = last_pos + 1
            logits = self.model(
                input_ids=tokens.unsqueeze(-1),
                attention_mask=mask,
                position_ids=last_pos.unsqueeze(-1),
                **{self._cache_arg: cache},
                use_cache=True,
            ).logits[:, -1, :]
        if self._prefix is not None:
            for key in consumed:  # extended by this call's entries
                self._prefix.drop(key)
        return done  # type: ignore[return-value]

    def _prefill(self, prompts: list[list[int]], cache):
        """Feed every prompt's uncached tokens and lay the rows out in `cache` for batched decoding:
        (last-position logits [B, V], attention mask [B, T], last position ids [B], the prefix-cache keys
        used). Each distinct prompt is prefilled alone, on top of its cached prefix: prefill is
        compute-bound, so batching it saves nothing, while padding rows to the longest new part would
        (one row may add a 300-token observation, another a single token). Rows with the same prompt and
        cached prefix (the G episodes of a group) share one prefill."""
        from transformers import DynamicCache

        dev = self.device
        unique: dict[tuple[int, ...], int] = {}
        index = [unique.setdefault(tuple(p), len(unique)) for p in prompts]
        hits = {
            key: self._prefix.lookup(list(key)) if self._prefix is not None else (None, None)
            for key in unique
        }
        logits, rows = [], []
        for key in unique:
            entry = hits[key][1]
            cached = min(entry.length, len(key) - 1) if entry is not None else 0  # feed >= 1 token
            row = growing(DynamicCache(config=self.model.config))
            if cached:
                for layer, (k, v) in enumerate(entry.kv):
                    row.update(k[None, :, :cached], v[None, :, :cached], layer)
            out = self.model(
                input_ids=torch.tensor([key[cached:]], dtype=torch.long, device=dev),
                position_ids=torch.arange(cached, len(key), device=dev)[None],
                **{self._cache_arg: row},
                use_cache=True,
                logits_to_keep=1,
            )
            logits.append(out.logits[0, -1])
            rows.append(Entry([(k[0], v[0]) for k, v in layer_tensors(row)]))
        lengths = [len(key) for key in unique]
        for layer, (keys, values) in enumerate(batch_cache(rows)):
            cache.update(keys, values, layer)
        width = max(lengths)
        mask = torch.zeros((len(rows), width), dtype=torch.long, device=dev)
        for r, n in enumerate(lengths):
            mask[r, width - n :] = 1
        idx = torch.tensor(index, device=dev)
        if len(rows) < len(prompts):
            cache.batch_select_indices(idx)
        last_pos = torch.tensor(lengths, device=dev)[idx] - 1
        consumed = {key for key, _ in hits.values() if key is not None}
        return torch.stack(logits)[idx], mask[idx], last_pos, consumed

    # -- weights and memory -----------------------------------------------------------------------

    def _load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> dict:
        """Copy `(HF name, tensor)` pairs into the model's parameters in place (cached KV, computed
        with the old weights, is dropped).

        Tied embeddings: `lm_head.weight` and `model.embed_tokens.weight` name the same tensor, so
        either name updates both. Tensors are cast to the engine's dtype and device. An unknown name
        or a shape mismatch raises `MtrError`; pairs before it are already applied.
        """
        if self._prefix is not None:
            self._prefix.clear()
        t0 = time.perf_counter()
        nbytes = count = 0
        with torch.no_grad():
            for name, tensor in named_tensors:
                param = self._params.get(name)
                if param is None:
                    raise MtrError(
                        f"update_weights: unknown parameter name {name!r} (not in the rollout model)"
                    )
                if tuple(tensor.shape) != tuple(param.shape):
                    raise MtrError(
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
        pass  # the KV cache lives only inside one `_generate_batch` call

    @torch.inference_mode()
    def logits(self, token_ids: list[int]) -> torch.Tensor:
        """Full-sequence logits [len(token_ids), vocab] as float32 on CPU."""
        check_prompts([token_ids], self.vocab_size)
        self._ensure_weights()
        ids = torch.tensor([token_ids], dtype=torch.long, device=self.device)
        return self.model(input_ids=ids, use_cache=False).logits[0].float().cpu()


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
