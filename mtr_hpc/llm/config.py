"""How a stage reaches a model it talks to in chat: synthesis's agents, and the model that plays the
tools in GRPO and evaluation. One config, one factory (`LLMConfig.client`) over `make_client`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

BACKENDS = ("openai", "transformers", "vllm", "echo")


@dataclass
class LLMConfig:
    """`openai`: an OpenAI-compatible endpoint (`mtr serve`, `vllm serve`, a hosted API) at `base_url`;
    `transformers` / `vllm`: the model in this process, through a rollout engine; `echo`: no model (the
    schema's minimal instance, for plumbing tests)."""

    backend: str = "openai"
    base_url: str = ""
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    # Requests one client keeps in flight (openai); `max_batch` requests decode at once (in process).
    max_in_flight: int = 64
    timeout_s: float = 120.0
    max_batch: int = 16
    device: str = "cpu"

    def __post_init__(self) -> None:
        # Keys relative to the section: the loader names the section (`llm.`, `tool_llm.`).
        if self.backend not in BACKENDS:
            raise ConfigError("backend", f"unknown backend {self.backend!r}; expected one of {BACKENDS}")
        for key in ("max_in_flight", "max_batch"):
            if getattr(self, key) < 1:
                raise ConfigError(key, f"must be >= 1, got {getattr(self, key)}")
        if not self.timeout_s > 0:
            raise ConfigError("timeout_s", f"must be > 0, got {self.timeout_s}")

    def client(self, default_model: str = "") -> Any:
        """A new client for this config; `default_model` when `model` is empty."""
        from . import make_client

        model = self.model or default_model
        if self.backend == "openai":
            options: dict[str, Any] = {
                "api_key_env": self.api_key_env,
                "concurrency": self.max_in_flight,
                "timeout_s": self.timeout_s,
            }
            if self.base_url:
                options["base_url"] = self.base_url
            return make_client("openai", model, **options)
        if self.backend == "transformers":
            return make_client("transformers", model, device=self.device, max_batch=self.max_batch)
        return make_client(self.backend, model)
