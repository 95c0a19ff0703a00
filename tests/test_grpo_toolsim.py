"""GRPO against tools played by a model: in process (SmolLM2), over real HTTP (`mtr serve` on
127.0.0.1), through a kill and a resume (the replay cache is part of the run's state), and with a tool
model that answers garbage, times out or breaks the schema.

The tiny random policy never writes a tool call of its own, so its engine here writes each episode's
first turn: a `search` for the question, with the policy's own log-probs of those tokens (teacher
forcing). The second turn is the policy's, after the observation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _paths import REPO
from test_tool_model import CountingClient

from mtr_hpc.config import load_config
from mtr_hpc.llm.config import LLMConfig
from mtr_hpc.tracking import read_metrics
from mtr_hpc.train.grpo_config import GRPOConfig

pytestmark = pytest.mark.slow

TOOLSIM = ("calls", "cache_hits", "invalid", "retries", "errors", "latency_s")


def _cfg(out: Path, *extra: str) -> GRPOConfig:
    return load_config(
        GRPOConfig,
        REPO / "configs" / "grpo-tiny.yaml",
        [
            f"out={out}",
            f"model.hf={REPO / 'configs/models/tiny-llama'}",
            "export_hf=false",
            "toolactor.backend=llm",
            "toolactor.max_tokens=64",
            *extra,
        ],
    )


class CallingEngine:
    """The policy's engine, except that an episode's first turn is a fixed `search` call."""

    def __init__(self, engine, tokenizer):
        self.engine, self.tokenizer = engine, tokenizer
        self.vocab_size = engine.vocab_size
        self.header = tokenizer.encode("<|im_start|>assistant", add_special_tokens=False)

    def _first_turn(self, prompt: list[int]) -> bool:
        h = self.header
        return sum(prompt[i : i + len(h)] == h for i in range(len(prompt))) == 1

    def _call(self, prompt: list[int], temperature: float):
        from mtr_hpc.rollout import Generation

        text = self.tokenizer.decode(prompt)
        question = text.split("<|im_start|>user\n")[-1].split("<|im_end|>")[0][:60]
        turn = (
            "<think>I will search.</think>\n<tool_call>\n"
            + json.dumps({"name": "search", "arguments": {"query": question}}, ensure_ascii=False)
            + "\n</tool_call><|im_end|>"
        )
        ids = self.tokenizer.encode(turn, add_special_tokens=False)
        logits = self.engine.logits(prompt + ids)[len(prompt) - 1 : -1] / temperature
        lps = torch.log_softmax(logits, -1).gather(1, torch.tensor(ids)[:, None])[:, 0]
        return Generation(ids, lps.tolist(), "stop", ids[-1])

    def generate(self, prompts, params):
        from mtr_hpc.rollout.protocol import per_request_params

        plist = per_request_params(params, len(prompts))
        free = [i for i, p in enumerate(prompts) if not self._first_turn(p)]
        gens = self.engine.generate([prompts[i] for i in free], [plist[i] for i in free]) if free else []
        out = {i: g for i, g in zip(free, gens, strict=True)}
        return [out.get(i) or self._call(p, plist[i].temperature) for i, p in enumerate(prompts)]

    def update_weights(self, named_tensors):
        return self.engine.update_weights(named_tensors)

    def sleep(self):
        self.engine.sleep()


@pytest.fixture
def calling_engine(monkeypatch):
    from mtr_hpc.train import grpo

    real = grpo.build_engine

    def build(cfg, hf_config, tokenizer, *args, **kwargs):
        return CallingEngine(real(cfg, hf_config, tokenizer, *args, **kwargs), tokenizer)

    monkeypatch.setattr(grpo, "build_engine", build)


def _toolsim(rows: list[dict]) -> list[dict]:
    return [{k: r[f"grpo/toolsim/{k}"] for k in TOOLSIM} for r in rows]


def test_grpo_with_smollm2_playing_the_tools_in_process(tmp_path, calling_engine):
    from mtr_hpc.train.grpo import run_grpo

    # Short requests: no evidence hint, one attempt (SmolLM2 decodes about 10 tokens a second here).
    run_grpo(_cfg(tmp_path / "run", "toolactor.evidence_hint=false", "toolactor.llm_retries=0"))
    rows = read_metrics(tmp_path / "run")
    sims = _toolsim(rows)
    # 2 prompts x 2 samples a step, one call each; the group's second member shares the first's answer.
    assert [s["calls"] for s in sims] == [4, 4]
    assert all(s["latency_s"] > 0 for s in sims)
    assert all(r["grpo/tool_calls"] == 1.0 for r in rows)
    cached = [json.loads(line) for line in (tmp_path / "run" / "sim_cache.jsonl").read_text().splitlines()]
    assert len(cached) == 4  # two questions a step, each one observation, valid or a typed error
    assert all(isinstance(c["obs"], dict) for c in cached)


def test_grpo_with_tools_played_over_http(tmp_path, calling_engine):
    from mtr_hpc.llm.server import LLMServer, ServeConfig
    from mtr_hpc.train.grpo import run_grpo

    with LLMServer(ServeConfig(backend="echo", port=0)).start() as server:
        run_grpo(_cfg(tmp_path / "run", "tool_llm.backend=openai", f"tool_llm.base_url={server.url}"))
        served = server.stats.requests
    sims = _toolsim(read_metrics(tmp_path / "run"))
    assert [s["calls"] for s in sims] == [4, 4] and served >= 4
    assert all(s["errors"] == 0 for s in sims)  # the echo server answers with schema instances


def _crash_at_step_one(monkeypatch):
    from mtr_hpc.train import grpo

    real, calls = grpo.policy_update, []

    def update(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed during step 1")
        return real(*args, **kwargs)

    monkeypatch.setattr(grpo, "policy_update", update)


@pytest.mark.parametrize("keep_cache", [True, False])
def test_a_killed_and_resumed_run_replays_its_observations(tmp_path, calling_engine, monkeypatch, keep_cache):
    """Each run's tool model is a fresh process of a model that answers differently every time; only
    the replay cache makes the resumed step see what the killed one saw, and sample what it sampled."""
    from mtr_hpc.train import grpo, grpo_rollout

    rollouts: list[list[list[int]]] = []  # every step's episodes, as token ids

    def recording(*args, **kwargs):
        episodes = real(*args, **kwargs)
        rollouts.append([ep.token_ids for ep in episodes])
        return episodes

    real = grpo_rollout.run_episodes
    monkeypatch.setattr(grpo_rollout, "run_episodes", recording)
    monkeypatch.setattr(LLMConfig, "client", lambda self, default_model="": CountingClient())
    grpo.run_grpo(_cfg(tmp_path / "full"))
    with monkeypatch.context() as m:
        _crash_at_step_one(m)
        with pytest.raises(KeyboardInterrupt):
            grpo.run_grpo(_cfg(tmp_path / "r"))
    cache = tmp_path / "r" / "sim_cache.jsonl"
    assert len(cache.read_text().splitlines()) == 4  # step 1's observations were written before the kill
    if not keep_cache:
        cache.unlink()
    grpo.run_grpo(_cfg(tmp_path / "r"))
    full_step1, killed_step1, resumed_step1 = rollouts[1], rollouts[3], rollouts[4]
    assert len(rollouts) == 5 and killed_step1 == full_step1
    assert (resumed_step1 == full_step1) == keep_cache
    full, resumed = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "r")
    assert [r["step"] for r in resumed] == [0, 1]
    for a, b in zip(full, resumed, strict=True):
        for key in ("grpo/reward/total", "grpo/loss", "grpo/response_length"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), key
    if keep_cache:
        assert resumed[1]["grpo/toolsim/cache_hits"] == 4


def test_a_broken_tool_model_never_crashes_a_step(tmp_path, calling_engine, monkeypatch):
    from mtr_hpc.llm.protocol import LLMError
    from mtr_hpc.train.grpo import run_grpo

    answers = iter(["not json", '{"wrong": true}', LLMError("timeout", "no answer", retryable=True)] * 20)
    monkeypatch.setattr(
        LLMConfig, "client", lambda self, default_model="": CountingClient(lambda r: next(answers))
    )
    run_grpo(_cfg(tmp_path / "run", "toolactor.llm_retries=2"))
    rows = read_metrics(tmp_path / "run")
    sims = _toolsim(rows)
    assert [r["step"] for r in rows] == [0, 1]
    # Two distinct calls a step, 3 attempts each; all four calls end in a typed error observation.
    assert all(s["errors"] == 4 and s["retries"] == 4 and s["invalid"] >= 2 for s in sims)
    assert all(torch.isfinite(torch.tensor(r["grpo/loss"])) for r in rows)
