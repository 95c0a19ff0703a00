"""`engine: auto` takes vLLM where it can serve the model and says why when it cannot."""

from __future__ import annotations

import importlib.util

import pytest
from _paths import REPO

from mtr_hpc.errors import ConfigError
from mtr_hpc.rollout import choice

H16 = str(REPO / "configs/models/tiny-llama")  # heads of 16: vLLM's CPU attention lacks them
H32 = str(REPO / "configs/models/tiny-llama-h32")


def test_a_named_engine_is_taken_as_named_and_an_unknown_one_refused():
    assert choice.choose_engine("hf", H16) == "hf"
    assert choice.choose_engine("vllm", H32) == "vllm"
    with pytest.raises(ConfigError, match="rollout.engine.*unknown engine 'sglang'"):
        choice.choose_engine("sglang", H32)


def test_auto_falls_back_with_its_reason(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(choice.importlib.util, "find_spec", lambda n: None if n == "vllm" else real(n))
    assert choice.choose_engine("auto", H32, key="engine") == "hf"
    assert "engine=auto; vLLM cannot serve here: it is not installed" in capsys.readouterr().err
    monkeypatch.setattr(choice.importlib.util, "find_spec", real)
    monkeypatch.setattr(choice, "cpu_flags", lambda: frozenset({"sse2", "avx"}))
    monkeypatch.setattr(choice.platform, "machine", lambda: "x86_64")
    assert choice.choose_engine("auto", H32) == "hf"
    assert "no AVX2" in capsys.readouterr().err


def test_auto_takes_vllm_where_it_serves_the_model(capsys):
    pytest.importorskip("vllm", reason="vLLM is installed by `tools/setup.sh --test`")
    assert choice.choose_engine("auto", H32) == "vllm"
    assert choice.choose_engine("auto", H16) == "hf"
    assert "attention heads of size 16" in capsys.readouterr().err
